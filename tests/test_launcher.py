import os
import signal
import time
from pathlib import Path

import pytest

from server.launcher import (
    RATE_LIMIT_ARG,
    SHM_DIR,
    ServerError,
    ServerOptions,
    TritonServer,
    free_port,
    free_ports,
    server_command,
)
from tests.helpers import add_python_model

pytestmark = pytest.mark.triton

ECHO = """
import triton_python_backend_utils as pb

class TritonPythonModel:
    def execute(self, requests):
        get = pb.get_input_tensor_by_name
        return [pb.InferenceResponse([pb.Tensor("Y", get(r, "X").as_numpy())]) for r in requests]
"""


def test_command_line_has_the_production_flags(tmp_path):
    opts = ServerOptions(model_repository=tmp_path, grpc_port=1234, response_cache_bytes=1024).resolved()
    cmd = " ".join(server_command(opts, tmp_path))
    for flag in (
        "--strict-readiness=true",
        "--grpc-port=1234",
        "--exit-timeout-secs=",
        "--cache-config=local,size=1024",
        f"--model-repository={tmp_path}",
    ):
        assert flag in cmd
    cache_dir = next(a for a in server_command(opts, tmp_path) if a.startswith("--cache-directory="))
    assert (Path(cache_dir.split("=", 1)[1]) / "local" / "libtritoncache_local.so").exists()
    assert RATE_LIMIT_ARG not in cmd  # only a fused repository orders its instances (tests/test_fused.py)


def test_free_ports_differ():
    assert len({free_port() for _ in range(5)}) == 5
    assert all(len(set(free_ports(3))) == 3 for _ in range(200))


def test_no_port_is_handed_out_twice_in_a_process():
    """Two servers whose ports are chosen one after the other (the rollout tests start two at once) must
    not share one: the first may not have bound its ports yet when the second's are chosen."""
    picked = [p for _ in range(300) for p in free_ports(3)]
    assert len(set(picked)) == len(picked)


def test_chosen_server_ports_are_distinct_and_given_ones_are_kept(tmp_path):
    for _ in range(100):
        opts = ServerOptions(model_repository=tmp_path).resolved()
        assert len({opts.http_port, opts.grpc_port, opts.metrics_port}) == 3
    opts = ServerOptions(model_repository=tmp_path, grpc_port=1234).resolved()
    assert opts.grpc_port == 1234 and 1234 not in (opts.http_port, opts.metrics_port)


def test_a_model_that_fails_to_load_is_reported_with_the_log(tmp_path):
    repo = tmp_path / "repo"
    add_python_model(repo, "broken", "raise RuntimeError('weights are missing')\n")
    server = TritonServer(ServerOptions(model_repository=repo, log_file=tmp_path / "log.txt", ready_timeout_s=60))
    with pytest.raises(ServerError) as err:
        server.start()
    message = str(err.value)
    assert "broken" in message and "weights are missing" in message
    assert server.process.poll() is not None  # nothing left running


def test_a_server_whose_metrics_port_is_taken_fails_to_start_with_the_log(tmp_path):
    """Triton answers ready before it binds the metrics port, then exits: start() must not return."""
    import socket

    repo = tmp_path / "repo"
    add_python_model(repo, "echo", ECHO)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        opts = ServerOptions(model_repository=repo, log_file=tmp_path / "log.txt", metrics_port=taken.getsockname()[1])
        server = TritonServer(opts)
        with pytest.raises(ServerError, match="shut down right after it was ready") as err:
            server.start()
    assert "already in use" in str(err.value)  # the log's own reason
    assert server.process.poll() is not None


def test_missing_repository_is_a_clear_error(tmp_path):
    with pytest.raises(ServerError, match="does not exist"):
        TritonServer(ServerOptions(model_repository=tmp_path / "nope")).start()


def test_two_servers_at_once_share_the_backend_directory(tmp_path):
    """Starting a second server must not rewrite the stub the first one is running."""
    repo = tmp_path / "repo"
    add_python_model(repo, "echo", ECHO)
    with TritonServer(ServerOptions(model_repository=repo, log_file=tmp_path / "a.log")) as first:
        with TritonServer(ServerOptions(model_repository=repo, log_file=tmp_path / "b.log")) as second:
            assert first.is_ready() and second.is_ready()
            assert first.grpc_url != second.grpc_url
    assert first.process.poll() is not None and second.process.poll() is not None


def test_stop_cleans_up_the_stubs_of_a_server_that_died(tmp_path):
    repo = tmp_path / "repo"
    add_python_model(repo, "echo", ECHO)
    server = TritonServer(ServerOptions(model_repository=repo, log_file=tmp_path / "log.txt")).start()
    pgid = server.process.pid
    prefix = server.options.shm_prefix
    assert prefix.startswith("shoprank_local_") and prefix != ServerOptions(repo).resolved().shm_prefix
    assert list(SHM_DIR.glob(f"{prefix}*"))  # the echo model's region, under this server's own prefix
    stubs = [pid for pid in live_members(pgid) if pid != pgid]
    assert stubs  # the echo model's stub, in the server's process group
    for pid in stubs:  # held still: a stub that notices its server gone exits by itself, sometimes before the check
        os.kill(pid, signal.SIGSTOP)
    os.kill(server.process.pid, signal.SIGKILL)  # the server dies, its stub processes do not
    server.process.wait(timeout=10)
    assert sorted(live_members(pgid)) == sorted(stubs)  # the orphaned stubs
    server.stop()
    deadline = time.monotonic() + 10
    while live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_members(pgid) == []  # killed (zombies waiting for init to reap them do not count)
    assert list(SHM_DIR.glob(f"{prefix}*")) == []  # the killed server could not remove its region: stop() did


def live_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids
