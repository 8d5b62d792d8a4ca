"""Shared fixtures: the small-profile repository (built once per session) and a real tritonserver."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

from builders.build import build
from builders.data import config as cfg_mod
from builders.data import demo
from builders.repository.model_specs import ENSEMBLE
from builders.repository.pipeline import InProcessPipeline
from server.launcher import ServerOptions, TritonServer, log_tail
from server.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def small_build(tmp_path_factory):
    """Build the small profile (cached under build/small/) into a fresh repository folder."""

    out = tmp_path_factory.mktemp("repo") / "model_repository"
    report = build("cpu", "small", out=out, work=REPO_ROOT / "build" / "small", progress=False)
    return out, report


@pytest.fixture(scope="session")
def small_repo(small_build) -> Path:
    return small_build[0]


@pytest.fixture(scope="session")
def small_dcn(tmp_path_factory, small_build):
    """``(work folder, config)`` of the small shop built with ``ranker.kind: dcn`` (cached in build/small-dcn/):
    what the DCN's own paths (its compressed variants, INT8 calibration) need when auto keeps the GBDT."""

    config = small_variant_config("small-dcn", ranker={"kind": "dcn"})
    work = REPO_ROOT / "build" / "small-dcn"
    out = tmp_path_factory.mktemp("dcn") / "model_repository"
    build("cpu", None, out=out, work=work, progress=False, config=config)
    return work, config


@pytest.fixture(scope="session")
def triton_server(small_repo, tmp_path_factory):
    """A real tritonserver on free ports serving the small repository; always stopped."""

    log = tmp_path_factory.mktemp("logs") / "tritonserver.log"
    server = TritonServer(ServerOptions(model_repository=small_repo, log_file=log, ready_timeout_s=180))
    server.start()
    _SHARED["server"] = server
    try:
        yield server
    finally:
        _SHARED.pop("server", None)
        server.stop()


@pytest.fixture(scope="session")
def ensemble_repo(small_build, tmp_path_factory) -> Path:
    """The small shop's repository in the ensemble layout (the gpu target's, and the cpu target's option):
    the same cached steps as ``small_repo``, assembled the other way."""

    out = tmp_path_factory.mktemp("ensemble") / "model_repository"
    build("cpu", "small", out=out, work=REPO_ROOT / "build" / "small", progress=False, layout=ENSEMBLE)
    return out


@pytest.fixture(scope="session")
def ensemble_server(ensemble_repo, tmp_path_factory):
    """A real tritonserver serving ``ensemble_repo``; always stopped."""

    log = tmp_path_factory.mktemp("logs") / "tritonserver-ensemble.log"
    with TritonServer(ServerOptions(model_repository=ensemble_repo, log_file=log, ready_timeout_s=180)) as server:
        yield server


@contextlib.contextmanager
def online_tritonserver(repo: Path, env: dict[str, str], log_dir: Path):
    """A real tritonserver on ``repo`` whose feature models read the online store that ``env`` names
    (``SHOPRANK_ONLINE_*``); always stopped."""

    server = TritonServer(
        ServerOptions(model_repository=repo, log_file=log_dir / "tritonserver.log", ready_timeout_s=180, env=env)
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def small_variant_config(name: str, **changes: dict):
    """The small demo shop's data under the config ``changes`` (top-level sections replaced)."""

    raw = demo.config_dict(name, REPO_ROOT / "build" / "small" / "demo_data")
    raw.update(changes)
    return cfg_mod.parse(raw, f"{name} variant")


def build_small_variant(name: str, out: Path, **changes: dict) -> Path:
    """``small_variant_config(name, **changes)`` built for the cpu target into ``out``; cached in build/<name>/
    (build/small/: only the steps the changes touch rerun)."""

    config = small_variant_config(name, **changes)
    build("cpu", None, out=out, work=REPO_ROOT / "build" / name, progress=False, config=config)
    return out


@pytest.fixture(scope="session")
def release_two(small_build, tmp_path_factory) -> Path:
    """The same demo shop a day later: statistics over a longer window (refreshed tables) and a ranker
    retrained with another seed, of the other kind (``ranker.kind: dcn``; the small build's auto keeps the
    GBDT): publishing it swaps the kind of ranker under load. Cached in build/small-v2/ (the encoder steps
    rerun once, ~15 s)."""
    out = tmp_path_factory.mktemp("release2") / "model_repository"
    return build_small_variant("small-v2", out, ranker={"seed": 1, "kind": "dcn"}, split={"stats": 0.6})


@pytest.fixture(scope="session")
def fashion_build(tmp_path_factory):
    """The fashion shop (``builders/data/fashion.py``, colour variants grouped by item_group_id), built through
    the config its generator writes (cached under build/fashion-small/): ``(repository, catalogue rows)``."""
    import pyarrow.parquet as pq

    out = tmp_path_factory.mktemp("fashion") / "model_repository"
    work = REPO_ROOT / "build" / "fashion-small"
    build("cpu", "fashion-small", out=out, work=work, progress=False)
    items = pq.read_table(work / "demo_data" / "catalog.parquet").to_pylist()
    return out, items


@pytest.fixture(scope="session")
def fashion_server(fashion_build, tmp_path_factory):
    """A real tritonserver on free ports serving the fashion repository; always stopped."""
    log = tmp_path_factory.mktemp("fashion_logs") / "tritonserver.log"
    server = TritonServer(ServerOptions(model_repository=fashion_build[0], log_file=log, ready_timeout_s=180))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_SHARED: dict = {}


@pytest.fixture(autouse=True)
def _shared_server_survives():
    """Fail the test during which the shared tritonserver died, with its log, not the tests after it: the
    dead server's log is kept beside it (``tritonserver.log.died-N``) and a new one is started on the same
    ports for the tests that follow (tritonserver 2.51 has died with signal 11 here: docs/serving.md)."""
    yield
    server = _SHARED.get("server")
    if server is not None and server.process.poll() is not None:
        code, log = server.process.returncode, server.options.log_path
        tail = log_tail(log, 30)
        server.stop()  # its stubs and shared memory
        deaths = _SHARED["deaths"] = _SHARED.get("deaths", 0) + 1
        kept = log.with_name(f"{log.name}.died-{deaths}")
        with contextlib.suppress(OSError):
            log.rename(kept)
        try:
            server.start()
            after = f"a new one serves the tests that follow on the same ports; this log kept at {kept}"
        except Exception as err:  # the tests that follow then fail to connect, as they would have
            _SHARED.pop("server", None)
            after = f"a new one did not start: {err}"
        pytest.fail(f"the shared tritonserver died during this test (exit {code}); {after}:\n{tail}")


@pytest.fixture(scope="session")
def pipeline(small_repo):

    return InProcessPipeline(small_repo)


@pytest.fixture(scope="session")
def known_ids(pipeline):
    tables = pipeline.search_store.tables
    return tables.user_ids_sorted.copy(), tables.item_ids_sorted.copy()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server (Debian's, scripts/get_redis.sh) on a free port; always stopped."""

    server = RedisServer(log_file=tmp_path_factory.mktemp("redis") / "redis.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def rng():
    return np.random.default_rng(7)
