"""Start and stop a real local ``tritonserver``.

The binary is the one bundled in the ``nvidia-pytriton`` wheel (Triton 2.51.0, the same server as the
NGC ``tritonserver:24.10-py3`` image production runs). That build carries only the python backend, so
the launcher assembles a backend directory with:

* ``python/``: the bundled python backend plus the stub for *this* interpreter;
* ``onnxruntime/``: a Python-based backend (``server/backends/onnxruntime/model.py``) that runs
  ``model.onnx`` with the ``onnxruntime`` package. It is a **local stand-in** for Triton's native
  onnxruntime backend: the model repository's configs are written for the native backend and are
  served unchanged by the NGC image in production.

Usage as a library::

    with TritonServer(ServerOptions(model_repository=path)) as server:
        print(server.grpc_url)

or from the shell: ``python -m server.launcher --model-repository model_repository``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import ShoprankError
from runtime.repository import ServedRepositoryError, layout

REPO_ROOT = Path(__file__).resolve().parent.parent
STANDIN_BACKENDS = Path(__file__).resolve().parent / "backends"
DEFAULT_BACKEND_DIR = REPO_ROOT / "build" / "triton_backends"


class ServerError(ShoprankError, RuntimeError):
    """The server could not be started or stopped; the message carries the log's last lines."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


READY_GRACE_S = 0.3  # after the first ready answer, how long the server must stay up to count as started
START_FAILED = "failed to start"  # Triton's log line when a service (HTTP, gRPC, metrics) cannot start
_HANDED_OUT: set[int] = set()  # ports free_ports returned in this process: never returned twice
_HANDED_OUT_LOCK = threading.Lock()


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now, and that no earlier
    call in this process returned. The sockets stay bound until all are chosen: picked one at a time,
    the kernel may hand out a just-closed port again (a server then fails with 'cannot listen to GRPC
    requests and metrics requests at the same port'); and a port handed to one server may not have been
    bound by it yet when the next server's ports are chosen ('Socket ... already in use' when the test
    fixtures start two servers at once)."""
    socks: list[socket.socket] = []
    chosen: list[int] = []
    with _HANDED_OUT_LOCK:
        try:
            while len(chosen) < count:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)  # held bound: the kernel cannot offer this port again meanwhile
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
                if port not in _HANDED_OUT:
                    chosen.append(port)
            _HANDED_OUT.update(chosen)
            return chosen
        finally:
            for sock in socks:
                sock.close()


def pytriton_server_dir() -> Path:
    """Folder ``pytriton/tritonserver`` of the installed ``nvidia-pytriton`` wheel (not imported)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("nvidia-pytriton is not installed: run `make setup` first")
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver"


def pytriton_libs_dir() -> Path:
    """The wheel's bundled shared libraries, needed once the stub is copied out of the wheel."""
    return pytriton_server_dir().parent.parent / "nvidia_pytriton.libs"


def _sync(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` unless identical. Atomic: a server already running the old file keeps
    it (overwriting a running stub in place would fail with 'Text file busy')."""
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def prepare_backend_dir(dest: Path = DEFAULT_BACKEND_DIR) -> Path:
    """Assemble the backend directory (idempotent: only changed files are copied)."""
    src = pytriton_server_dir()
    py_ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = src / "python_backend_stubs" / py_ver / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(f"no python backend stub for Python {py_ver} in {src}")
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (src / "backends" / "python").iterdir():
        if item.is_file():
            _sync(item, python_dir / item.name)
    _sync(stub, python_dir / "triton_python_backend_stub")
    for backend in STANDIN_BACKENDS.iterdir():
        if (backend / "model.py").exists():
            target = dest / backend.name
            target.mkdir(parents=True, exist_ok=True)
            _sync(backend / "model.py", target / "model.py")
    return dest


# Triton's rate limiter orders the fused models' instances by their priorities (builders/repository/triton_config.py)
RATE_LIMIT_ARG = "--rate-limit=execution_count"

# The text_encoder config enables Triton's response cache: repeated queries skip the encoder
# (measured on the shop's query log: docs/tuning.md). 64 MiB holds about 40,000 query embeddings.
DEFAULT_RESPONSE_CACHE_BYTES = 64 * 1024 * 1024


@dataclass
class ServerOptions:
    """What the launcher needs to start one server. Ports of 0 are replaced by free ones."""

    model_repository: Path
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    log_file: Path | None = None
    ready_timeout_s: float = 120.0
    exit_timeout_s: int = 30
    log_verbose: int = 0
    response_cache_bytes: int = DEFAULT_RESPONSE_CACHE_BYTES  # 0: no cache (models that enable it run uncached)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # on top of server_env(), e.g. SHOPRANK_ONLINE_URL
    # "none": the repository is fixed while serving; "explicit": every model loaded at start, then changed
    # only through the model control API (server/publish.py publishes and rolls back releases that way).
    # A fused repository (runtime/fused.py) always starts in explicit mode, its served models named.
    model_control: str = "none"
    # the python backend's shared-memory regions: /dev/shm/<prefix><uuid>; "" = one of its own per server
    # (``resolved``), so ``TritonServer.stop`` can remove what a killed server left without touching another's
    shm_prefix: str = ""

    def resolved(self) -> ServerOptions:
        opts = ServerOptions(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        opts.model_repository = Path(opts.model_repository).resolve()
        fresh = iter(free_ports(3))
        opts.http_port = opts.http_port or next(fresh)
        opts.grpc_port = opts.grpc_port or next(fresh)
        opts.metrics_port = opts.metrics_port or next(fresh)
        if opts.log_file is None:
            opts.log_file = REPO_ROOT / "build" / "logs" / f"tritonserver-{opts.grpc_port}.log"
        opts.log_file = Path(opts.log_file).resolve()
        opts.shm_prefix = opts.shm_prefix or f"shoprank_local_{secrets.token_hex(6)}_"
        return opts

    @property
    def log_path(self) -> Path:
        """The server's log file (``resolved`` sets it)."""
        if self.log_file is None:
            raise ValueError("ServerOptions.log_file is None: call resolved() first")
        return self.log_file


def server_command(opts: ServerOptions, backend_dir: Path) -> list[str]:
    """The exact ``tritonserver`` command line for ``opts`` (already resolved)."""
    binary = pytriton_server_dir() / "bin" / "tritonserver"
    cmd = [
        str(binary),
        f"--model-repository={opts.model_repository}",
        f"--backend-directory={backend_dir}",
        f"--http-port={opts.http_port}",
        f"--grpc-port={opts.grpc_port}",
        f"--metrics-port={opts.metrics_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        # Ready only when every model loaded: what load balancers and our tests rely on.
        "--strict-readiness=true",
        f"--exit-timeout-secs={opts.exit_timeout_s}",
        f"--log-verbose={opts.log_verbose}",
        # Each python-backend instance starts with 8 MiB of shared memory (it grows on demand).
        "--backend-config=python,shm-default-byte-size=8388608",
    ]
    if opts.shm_prefix:
        cmd.append(f"--backend-config=python,shm-region-prefix-name={opts.shm_prefix}")
    if opts.model_control not in ("none", "explicit"):
        raise ServerError(f"model_control: expected 'none' or 'explicit', got {opts.model_control!r}")
    named = models_to_load(Path(opts.model_repository))
    if opts.model_control == "explicit" or named:
        # A fused repository's parts are files, not served models: only its ensembles and steps load, which
        # needs explicit model control (``none`` loads every folder with a config).
        cmd += ["--model-control-mode=explicit"] + [f"--load-model={m}" for m in named or ["*"]]
    if named:
        # The fused models list their instances in a fixed order (rate-limiter priorities): the first free one
        # takes each request, so consecutive requests at low load meet one process's warm caches.
        cmd.append(RATE_LIMIT_ARG)
    if opts.response_cache_bytes:
        # The local cache implementation ships in the wheel next to the server, not in /opt/tritonserver.
        cmd += [
            f"--cache-directory={pytriton_server_dir() / 'caches'}",
            f"--cache-config=local,size={opts.response_cache_bytes}",
        ]
    return cmd + list(opts.extra_args)


def models_to_load(repo: Path) -> list[str]:
    """The models to name at start for a repository with parts (the cpu target's fused layout): its
    ensembles and their steps. [] when every model of the repository is served (or it has no ensemble)."""
    try:
        lay = layout(repo)
    except (ServedRepositoryError, OSError):
        return []
    return list(lay.served) if lay.parts else []


def server_env() -> dict[str, str]:
    """Environment for the server: our interpreter's bin first (the stub finds the venv's packages)."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    libs = str(pytriton_libs_dir())
    env["LD_LIBRARY_PATH"] = libs + (os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    # The project's packages (runtime/, server/) must import inside the python backend stubs.
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


SHM_DIR = Path("/dev/shm")


class TritonServer:
    """A running ``tritonserver`` process; a context manager that always stops it."""

    def __init__(self, options: ServerOptions):
        self.options = options.resolved()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The tritonserver process; ServerError before ``start``."""
        if self.process is None:
            raise ServerError("tritonserver has not been started")
        return self.process

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.options.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.options.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.options.metrics_port}/metrics"

    @property
    def command(self) -> list[str]:
        return server_command(self.options, DEFAULT_BACKEND_DIR)

    def start(self) -> TritonServer:
        backend_dir = prepare_backend_dir()
        opts = self.options
        if not opts.model_repository.is_dir():
            raise ServerError(f"model repository {opts.model_repository} does not exist: run `make build`")
        opts.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(opts.log_path, "wb") as log:  # the child keeps its own copy of the handle
            self.process = subprocess.Popen(
                server_command(opts, backend_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**server_env(), **opts.env},
                start_new_session=True,
            )
        try:
            self.wait_ready(opts.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(self._failure(f"tritonserver exited with code {code} before it was ready"))
            if self.is_ready():
                # the metrics service starts after HTTP answers: a server that cannot bind it logs
                # "failed to start Metrics service" and shuts down while it still answers ready
                time.sleep(READY_GRACE_S)
                if self.proc.poll() is not None or START_FAILED in self.options.log_path.read_text(errors="replace"):
                    raise ServerError(self._failure("tritonserver shut down right after it was ready"))
                return
            time.sleep(0.2)
        raise ServerError(self._failure(f"tritonserver was not ready within {timeout_s:.0f} s"))

    def _failure(self, headline: str) -> str:
        tail = log_tail(self.options.log_path)
        failed = [ln for ln in tail.splitlines() if "failed to load" in ln or "UNAVAILABLE" in ln]
        detail = ("\nmodels that failed to load:\n  " + "\n  ".join(failed)) if failed else ""
        return f"{headline} (log: {self.options.log_file}){detail}\nlast lines of the log:\n{tail}"

    def stop(self) -> int | None:
        """SIGTERM, wait for Triton's own exit timeout (plus margin), then SIGKILL what is left of the
        process group: also when the server died on its own, its python-backend stubs may outlive it."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=self.options.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already empty
        code = self.process.wait(timeout=10)
        self._remove_shared_memory()
        return code

    def _remove_shared_memory(self) -> None:
        """The shared-memory regions of this server that are left: a server that exits removes its own, a killed
        one (SIGKILL, a crash, the OOM killer) cannot, and each is at least 8 MiB of memory until removed."""
        prefix = self.options.shm_prefix
        if not prefix:
            return
        for region in SHM_DIR.glob(f"{prefix}*"):
            region.unlink(missing_ok=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a model repository on the bundled tritonserver.")
    parser.add_argument("--model-repository", type=Path, default=REPO_ROOT / "model_repository")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--log-file", type=Path, default=None)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument(
        "--response-cache-bytes",
        type=int,
        default=DEFAULT_RESPONSE_CACHE_BYTES,
        help="Triton's local response cache (used by text_encoder); 0 turns it off",
    )
    parser.add_argument(
        "--model-control",
        choices=("none", "explicit"),
        default="none",
        help="explicit: releases are published and rolled back while serving (python -m server.publish)",
    )
    parser.add_argument("--print-command", action="store_true", help="print the command line and exit")
    args = parser.parse_args(argv)
    server = TritonServer(
        ServerOptions(
            model_repository=args.model_repository,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            log_file=args.log_file,
            ready_timeout_s=args.ready_timeout,
            response_cache_bytes=args.response_cache_bytes,
            model_control=args.model_control,
        )
    )
    if args.print_command:
        print(" ".join(server.command))
        return 0
    try:
        server.start()
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"tritonserver ready: gRPC {server.grpc_url}  HTTP {server.http_url}  metrics {server.metrics_url}")
    print(f"log: {server.options.log_file}   (Ctrl-C stops it)")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"] and server.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    code = server.proc.poll()
    server.stop()
    if code not in (None, 0):
        print(f"error: tritonserver exited with code {code}\n{log_tail(server.options.log_path)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
