"""Start a real ``redis-server`` (Debian's 7.0, fetched by ``scripts/get_redis.sh``) for local use and tests.

    python -m server.redis_server --port 6379        # or: make redis

Nothing is persisted (``--save ''``, no AOF): the online store is rebuilt from the build's snapshot
(``python -m online seed``) and the shop's update feed, so a local Redis needs no disk. In production
point the stack at a managed Redis or the chart's optional one instead (helm/README.md).

``pause``/``resume`` stop and continue the process (SIGSTOP/SIGCONT): a Redis that accepts connections
but answers nothing, which is how the tests make it slow.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runtime.errors import ShoprankError
from server.launcher import REPO_ROOT, free_port

TOOLS = REPO_ROOT / "build" / "tools" / "redis"


class RedisError(ShoprankError, RuntimeError):
    pass


def binary() -> Path:
    path = TOOLS / "bin" / "redis-server"
    if not path.exists():
        raise RedisError(f"{path} is missing: run `make setup` (scripts/get_redis.sh fetches Debian's redis-server)")
    return path


class RedisServer:
    """One ``redis-server`` process on loopback; a context manager that always stops it."""

    def __init__(self, port: int = 0, log_file: Path | None = None):
        self.port = port or free_port()
        self.log_file = log_file or REPO_ROOT / "build" / "logs" / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            str(binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        import redis

        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, LD_LIBRARY_PATH=str(TOOLS / "lib"))
        with open(self.log_file, "wb") as log:  # the child keeps its own copy of the handle
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisError(f"redis-server exited with {self.process.returncode}: {self.log_file.read_text()}")
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise RedisError(f"redis-server did not answer within {timeout_s:.0f} s (log: {self.log_file})")

    def pause(self) -> None:
        """Freeze the process: connections are accepted by the kernel, nothing is answered."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.resume()  # a stopped process does not handle SIGTERM until continued
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=6379)
    args = parser.parse_args(argv)
    server = RedisServer(args.port)
    try:
        server.start()
    except RedisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"redis-server ready: {server.url}   (Ctrl-C stops it; set SHOPRANK_ONLINE_URL={server.url})")
    try:
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
