"""Start a real Redis Cluster on loopback: Debian's redis-server 7.0 with ``cluster-enabled yes``, created with
``redis-cli --cluster create`` (``scripts/get_redis.sh`` fetches both), for local use and tests.

    python -m server.redis_cluster --masters 3 --replicas 1        # or: make redis-cluster

Three masters with a replica each by default, every node on a free port. Nothing is persisted (``--save ''``,
no AOF); ``cluster-node-timeout`` is short (``node_timeout_ms``, 1,000 ms) so a killed master's replica is
promoted within seconds, as the fault tests need. ``kill(port)`` sends SIGKILL to one node; ``stop()`` ends
them all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from server.launcher import REPO_ROOT
from server.redis_server import TOOLS, RedisError, binary


def cluster_port(taken: set[int]) -> int:
    """A free loopback port whose cluster bus port (+10,000) is free too: Redis Cluster needs both, so the
    port must be at most 55,535."""
    import random
    import socket

    rng = random.Random()
    for _ in range(1000):
        port = rng.randint(20_000, 55_000)
        if port in taken or port + 10_000 in taken:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RedisError("no free port pair (port, port + 10000) below 55535")


def cli() -> Path:
    path = TOOLS / "bin" / "redis-cli"
    if not path.exists():
        raise RedisError(f"{path} is missing: run `make setup` (scripts/get_redis.sh fetches Debian's redis-cli)")
    return path


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, all on loopback; a context manager that always
    stops every node."""

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000, log_dir: Path | None = None):
        if masters < 3:
            raise RedisError(f"a Redis Cluster needs at least 3 masters, got {masters}")
        self.masters, self.replicas, self.node_timeout_ms = masters, replicas, node_timeout_ms
        self.ports: list[int] = []
        for _ in range(masters * (1 + replicas)):
            self.ports.append(cluster_port(set(self.ports)))
        self.log_dir = log_dir or REPO_ROOT / "build" / "logs" / f"redis-cluster-{self.ports[0]}"
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="shoprank-redis-cluster-"))

    @property
    def url(self) -> str:
        """A seed node's URL (any node: the client discovers the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def seeds(self) -> str:
        """Every node as ``host:port,...``: ``SHOPRANK_ONLINE_SEEDS``."""
        return ",".join(self.nodes)

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def _env(self) -> dict[str, str]:
        return dict(os.environ, LD_LIBRARY_PATH=str(TOOLS / "lib"))

    def start_node(self, port: int) -> None:
        node_dir = self._dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(binary()),
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            # a new replica syncs at once (the default waits 5 s for more replicas to share one transfer): a
            # replica that has never synced cannot be promoted
            "--repl-diskless-sync-delay", "0",
            # the other masters keep serving their slots while one is lost (with the default "yes" every node
            # answers CLUSTERDOWN from the failure report until the promotion, about a second here)
            "--cluster-require-full-coverage", "no",
        ]  # fmt: skip
        with open(self.log_dir / f"{port}.log", "ab") as log:
            self.processes[port] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self._env())

    def start(self, timeout_s: float = 30.0) -> RedisCluster:
        import redis

        for port in self.ports:
            self.start_node(port)
        for port in self.ports:
            self._wait_ping(port, timeout_s)
        create = [str(cli()), "--cluster", "create", *self.nodes, "--cluster-replicas", str(self.replicas)]
        done = subprocess.run(
            [*create, "--cluster-yes"], env=self._env(), capture_output=True, text=True, timeout=timeout_s
        )
        if done.returncode != 0 or "All 16384 slots covered" not in done.stdout:
            self.stop()
            raise RedisError(f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = redis.Redis(port=self.ports[0], socket_timeout=1).cluster("info")
            if info.get("cluster_state") == "ok" and self._replicas_synced():
                return self
            time.sleep(0.1)
        self.stop()
        raise RedisError(f"the cluster did not reach cluster_state:ok within {timeout_s:.0f} s")

    def _replicas_synced(self) -> bool:
        """Every replica's link to its master is up (its first sync is done): each can be promoted."""
        import redis

        for port in self.processes:
            info = redis.Redis(port=port, socket_timeout=1).info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def _wait_ping(self, port: int, timeout_s: float) -> None:
        import redis

        client = redis.Redis(port=port, socket_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.processes[port]
            if proc.poll() is not None:
                raise RedisError(f"redis-server :{port} exited with {proc.returncode} (log: {self.log_dir})")
            try:
                if client.ping():
                    client.close()
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RedisError(f"redis-server :{port} did not answer within {timeout_s:.0f} s (log: {self.log_dir})")

    def master_ports(self) -> list[int]:
        """The ports of the nodes that are masters now (a failover changes them)."""
        import redis

        for port in self.ports:
            if port in self.processes and self.processes[port].poll() is None:
                try:
                    nodes = redis.Redis(port=port, socket_timeout=1).cluster("nodes")
                except redis.RedisError:
                    continue
                return sorted(
                    int(addr.split("@")[0].rsplit(":", 1)[1])
                    for addr, node in nodes.items()
                    if "master" in node["flags"] and "fail" not in node["flags"] and node.get("connected", True)
                )
        return []

    def node_id(self, port: int) -> str:
        import redis

        return str(redis.Redis(port=port, socket_timeout=2).execute_command("CLUSTER", "MYID").decode())

    def reshard(self, slots: int, from_port: int, to_port: int, timeout_s: float = 120.0) -> str:
        """Move ``slots`` hash slots, keys included, from one master to another, live
        (``redis-cli --cluster reshard``); returns redis-cli's output."""
        done = subprocess.run(
            [
                str(cli()),
                "--cluster",
                "reshard",
                f"127.0.0.1:{from_port}",
                "--cluster-from",
                self.node_id(from_port),
                "--cluster-to",
                self.node_id(to_port),
                "--cluster-slots",
                str(slots),
                "--cluster-yes",
            ],  # fmt: skip
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise RedisError(f"redis-cli --cluster reshard failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        return done.stdout

    def slots_of(self, port: int) -> int:
        """How many hash slots the master on ``port`` holds."""
        import redis

        for addr, node in redis.Redis(port=port, socket_timeout=2).cluster("nodes").items():
            if addr.split("@")[0].endswith(f":{port}"):
                return sum(int(r[-1]) - int(r[0]) + 1 for r in node["slots"])
        return 0

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crash: no goodbye to the cluster)."""
        proc = self.processes.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def pause(self) -> None:
        """Freeze every node (SIGSTOP): connections are accepted by the kernel, nothing answers (the whole
        cluster down, as a client sees it); ``resume`` continues them."""
        for proc in self.processes.values():
            proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for proc in self.processes.values():
            proc.send_signal(signal.SIGCONT)

    def wait_ok(self, timeout_s: float = 30.0) -> float:
        """Seconds until every live node sees all 16384 slots served by connected masters (after a kill: the
        replica promoted; ``cluster_state`` alone stays ok with uncovered slots when full coverage is not
        required, and right after a kill no node has noticed yet)."""
        import redis

        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            ok = []
            for port in list(self.processes):
                try:
                    node = redis.Redis(port=port, socket_timeout=0.5)
                    info = node.cluster("info")
                    serving = [
                        n["connected"] and "fail" not in n["flags"]
                        for n in node.cluster("nodes").values()
                        if "master" in n["flags"] and n["slots"]
                    ]  # a killed master holds its slots (disconnected) until its replica takes them
                    ok.append(int(info.get("cluster_slots_ok", 0)) == 16384 and all(serving))
                except redis.RedisError:
                    ok.append(False)
            if ok and all(ok):
                return time.monotonic() - start
            time.sleep(0.05)
        raise RedisError(f"the cluster did not serve all 16384 slots again within {timeout_s:.0f} s")

    def stop(self) -> None:
        self.resume()  # a stopped process does not handle SIGTERM until continued
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args(argv)
    cluster = RedisCluster(args.masters, args.replicas)
    try:
        cluster.start()
    except RedisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"redis cluster ready: {', '.join(cluster.nodes)}   (Ctrl-C stops it; set SHOPRANK_ONLINE_URL={cluster.url} "
        f"SHOPRANK_ONLINE_CLUSTER=1 SHOPRANK_ONLINE_SEEDS={cluster.seeds})"
    )
    try:
        while all(p.poll() is None for p in cluster.processes.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
