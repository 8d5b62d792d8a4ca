"""The cpu target's fused layout: its specs, its repository layout, and each fused call against the ensemble
layout's steps run one by one in process (builders/repository/pipeline.py) on the same files."""

from __future__ import annotations

import json
import shutil
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from benchmarks.pipeline import model_counts
from builders.__main__ import main as builders_main
from builders.build import build
from builders.repository.assemble import VERSION, RepositoryError, validate
from builders.repository.model_specs import ENSEMBLE, FUSED, FusedSizes, spec_by_name, specs
from builders.repository.triton_config import WARMUP_DIR, instance_count
from runtime import contract as c
from runtime.counters import FLUSH_S
from runtime.fused import (
    PARTS,
    WARM_VALUES,
    EmbeddingCache,
    FusedRecommend,
    FusedRecommendCatalog,
    FusedSearch,
    FusedSearchCatalog,
    FusedSettings,
    Occupied,
    Serving,
    fused_name,
)
from runtime.occupancy import Occupancy
from runtime.ort_runner import make_session
from runtime.repository import layout, read_config
from runtime.text import QueryTokens
from server.launcher import RATE_LIMIT_ARG, ServerOptions, TritonServer, models_to_load, server_command
from server.raw_requests import call as raw_call
from tests.conftest import REPO_ROOT

CALLS = c.CALLS


@pytest.mark.unit
def test_cache_keeps_the_most_recent_entries_and_counts_lookups():
    seen: list[bool] = []
    cache = EmbeddingCache(2, on_lookup=seen.append)
    runs: list[str] = []

    def compute(key: str):
        def run():
            runs.append(key)
            return np.array([len(runs)], np.float32)

        return run

    assert cache.get(b"a", compute("a"))[0] == 1
    assert cache.get(b"b", compute("b"))[0] == 2
    assert cache.get(b"a", compute("a"))[0] == 1  # a hit: not computed again, and now the most recent
    assert cache.get(b"c", compute("c"))[0] == 3  # evicts b, the least recently used
    assert cache.get(b"a", compute("a"))[0] == 1
    assert cache.get(b"b", compute("b"))[0] == 4  # computed again
    assert runs == ["a", "b", "c", "b"]
    assert seen == [False, False, True, False, True, False]
    assert (cache.hits, cache.misses) == (2, 4)


@pytest.mark.unit
def test_a_cache_of_zero_entries_computes_every_time():
    cache = EmbeddingCache(0)
    values = [cache.get(b"q", lambda: np.zeros(1, np.float32)) for _ in range(3)]
    assert len(values) == 3 and cache.misses == 3 and cache.hits == 0


@pytest.mark.unit
def test_each_call_is_one_fused_step_with_the_ensembles_interface():
    fused, ensemble = spec_by_name(layout=FUSED), spec_by_name(layout=ENSEMBLE)
    for call in CALLS:
        (step,) = fused[call].steps
        assert step.model == fused_name(call)
        model = fused[step.model]
        assert model.backend == "python"
        assert model.inputs == ensemble[call].inputs and model.outputs == ensemble[call].outputs
        assert fused[call].inputs == ensemble[call].inputs and fused[call].outputs == ensemble[call].outputs
        # the parts are what the ensemble layout's steps of the same call are
        assert set(PARTS[call]) == {s.model for s in ensemble[call].steps}
        assert model.parameters["shoprank_parts"].split(",") == list(PARTS[call])
    assert {s.name for s in specs(layout=FUSED)} - {s.name for s in specs(layout=ENSEMBLE)} == {
        fused_name(call) for call in CALLS
    }


@pytest.mark.unit
def test_an_unknown_layout_is_refused_by_name():
    with pytest.raises(ValueError, match="layout: expected one of"):
        specs(layout="fast")


@pytest.mark.unit
def test_settings_name_the_parts_at_the_models_own_version(tmp_path):
    config = {
        "parameters": {"shoprank_parts": {"string_value": "topk,ranker"}, "query_cache_entries": {"string_value": "5"}}
    }
    settings = FusedSettings.from_config(json.dumps(config), tmp_path / "search_fused", "7")
    assert settings.folders == {"topk": tmp_path / "topk" / "7", "ranker": tmp_path / "ranker" / "7"}
    assert settings.cache_entries == 5 and settings.threads == 1 and settings.encoder_thread_count == 1
    assert settings.alone_threads == 0 and not settings.widens
    config["parameters"]["encoder_intra_op_thread_count"] = {"string_value": "2"}
    settings = FusedSettings.from_config(json.dumps(config), tmp_path / "search_fused", "7")
    assert settings.encoder_thread_count == 2 and settings.threads == 1  # the encoder's own, the ranker's 1
    config["parameters"]["encoder_alone_threads"] = {"string_value": "2"}
    assert not FusedSettings.from_config(json.dumps(config), tmp_path / "search_fused", "7").widens  # not wider
    config["parameters"]["encoder_alone_threads"] = {"string_value": "4"}
    settings = FusedSettings.from_config(json.dumps(config), tmp_path / "search_fused", "7")
    assert settings.alone_threads == 4 and settings.widens
    with pytest.raises(ValueError, match="shoprank_parts"):
        FusedSettings.from_config(json.dumps({"parameters": {}}), tmp_path / "search_fused", "1")
    assert not settings.warm_up  # no model_warmup in the config
    config["model_warmup"] = [{"name": "made_up_request", "batch_size": 1}]
    assert FusedSettings.from_config(json.dumps(config), tmp_path / "search_fused", "7").warm_up


def _read_warm_file(data: bytes, dtype: str) -> list:
    """A warm-up input file as Triton reads it: raw little-endian numbers, or BYTES as length-prefixed strings."""
    if dtype != "TYPE_STRING":
        return np.frombuffer(data, {"TYPE_INT64": "<i8", "TYPE_INT32": "<i4"}[dtype]).tolist()
    values, at = [], 0
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        values.append(data[at + 4 : at + 4 + n].decode())
        at += 4 + n
    return values


@pytest.mark.unit
def test_each_fused_model_holds_a_made_up_request_that_triton_sends_each_instance_at_load():
    by_name = spec_by_name(layout=FUSED)
    for call in CALLS:
        spec = by_name[fused_name(call)]
        (sample,) = spec.to_proto().model_warmup
        assert sample.batch_size == 1 and sample.count == 1  # batch size 0 would be skipped by Triton
        assert set(sample.inputs) == {t.name for t in spec.inputs}  # every input of the call, no other
        files = spec.warmup_files()
        for name, given in sample.inputs.items():
            data = files[f"{WARMUP_DIR}/{given.input_data_file}"]
            values = _read_warm_file(data, model_config_type(given.data_type))
            assert values == list(WARM_VALUES[name]) and list(given.dims) == [len(values)]
    # only the fused models warm up: the parts are not served, an ensemble takes no warm-up
    assert not [s.name for s in specs(layout=FUSED) if s.warmup and not s.name.endswith("_fused")]
    assert not [s.name for s in specs(layout=ENSEMBLE) if s.warmup]
    # a retrieval that asks item_scan through BLS (retrieval.engine: scan) takes none: Triton loads the models
    # side by side, and a warm-up that met item_scan not yet loaded would stop the model from loading
    scanned = {s.name: s for s in specs(scan=True, layout=FUSED)}
    assert [call for call in CALLS if scanned[fused_name(call)].warmup] == [c.SEARCH_ENSEMBLE, c.RECOMMEND_ENSEMBLE]


def model_config_type(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(value)


@pytest.mark.slow
def test_a_build_carries_its_warm_up_files_and_validate_refuses_one_that_differs(small_repo, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(small_repo, copy)
    spec = spec_by_name(layout=FUSED)[fused_name(c.SEARCH_CATALOG)]
    for rel, data in spec.warmup_files().items():
        assert (copy / spec.name / rel).read_bytes() == data  # written beside the config by the build
    top_k = copy / spec.name / WARMUP_DIR / c.TOP_K
    top_k.write_bytes(np.array([0], "<i4").tobytes())  # a TOP_K the model refuses: Triton would not load it
    with pytest.raises(RepositoryError, match=f"search_catalog_fused: .*{WARMUP_DIR}/TOP_K, a file of its warm-up"):
        validate(copy)
    top_k.unlink()
    with pytest.raises(RepositoryError, match="TOP_K, a file of its warm-up request, is missing"):
        validate(copy)


class _CountedSession:
    """A real ONNX Runtime session that counts its runs."""

    def __init__(self, session):
        self.session, self.runs = session, 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.session.run(*args, **kwargs)


@pytest.mark.slow
def test_a_fused_model_with_a_warm_up_runs_each_encoder_session_once_at_load(small_repo, tmp_path, monkeypatch):
    """Triton's warm-up request runs one of the two encoder sessions (whichever the occupancy picks): a model
    whose config has one runs both once at load, outside the cache and the run count."""
    import runtime.fused as fused_module

    made = []
    monkeypatch.setattr(
        fused_module, "make_session", lambda *a, **k: made.append(_CountedSession(make_session(*a, **k))) or made[-1]
    )
    occupancy = Occupancy(tmp_path / "occupancy")
    for call in (c.SEARCH_ENSEMBLE, c.SEARCH_CATALOG):
        folders = {p: small_repo / p / VERSION for p in PARTS[call]}
        kind = FusedSearch if call == c.SEARCH_ENSEMBLE else FusedSearchCatalog
        for warm in (True, False):
            made.clear()
            runs: list[bool] = []
            loaded = kind.load(
                FusedSettings(folders, alone_threads=2, warm_up=warm),
                Serving(occupancy=occupancy, encoder_runs=runs.append),
            )
            encoder = loaded.encoder
            assert {id(encoder.session), id(encoder.wide)} <= {id(m) for m in made}  # both sessions counted
            assert encoder.session.runs == encoder.wide.runs == (1 if warm else 0), call
            assert runs == [] and encoder.cache.hits == encoder.cache.misses == 0  # not a request
    occupancy.close()


@pytest.mark.triton
@pytest.mark.slow
def test_each_fused_instance_answers_the_made_up_request_before_the_server_is_ready(
    small_repo, pipeline, known_ids, tmp_path
):
    """Triton counts the warm-up in the model's statistics: before any client asks, each instance of each fused
    model has answered one request; the first shopper's answer is the pipeline's."""
    users, items = known_ids
    with TritonServer(ServerOptions(model_repository=small_repo, log_file=tmp_path / "ts.log")) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for call in CALLS:
            model = fused_name(call)
            (stats,) = client.get_inference_statistics(model, as_json=True)["model_stats"]
            instances = instance_count(read_config(small_repo / model))
            assert int(stats["inference_count"]) == int(stats["execution_count"]) == instances == 2, model
        got = raw_call(client, int(users[0]), items[:20], 5, b"running shoes")
    np.testing.assert_array_equal(got[0], pipeline.search(int(users[0]), b"running shoes", items[:20], 5)[0])


@pytest.mark.slow
def test_a_fused_build_serves_its_calls_and_releases_its_parts(small_repo):
    manifest = json.loads((small_repo / c.SEARCH_FEATURES / VERSION / "manifest.json").read_text())
    assert manifest["layout"] == FUSED
    lay = layout(small_repo)
    assert set(lay.ensembles) == set(CALLS)
    assert set(lay.steps) == {fused_name(call) for call in CALLS}
    assert set(lay.parts) == {p for parts in PARTS.values() for p in parts}
    assert set(lay.released) == set(lay.steps) | set(lay.parts)
    # the server loads the ensembles and the fused models by name, never the parts
    named = models_to_load(small_repo)
    assert set(named) == set(lay.served)
    cmd = server_command(ServerOptions(model_repository=small_repo).resolved(), small_repo)
    assert "--model-control-mode=explicit" in cmd
    assert {a.split("=", 1)[1] for a in cmd if a.startswith("--load-model=")} == set(lay.served)
    assert RATE_LIMIT_ARG in cmd  # the fused models' instances are taken in their configs' order


def _settings(repo, call):
    return FusedSettings({p: repo / p / VERSION for p in PARTS[call]})


@pytest.mark.slow
def test_fused_calls_answer_as_the_steps_run_one_by_one(small_repo, pipeline, known_ids, rng):
    users, items = known_ids
    search = FusedSearch.load(_settings(small_repo, c.SEARCH_ENSEMBLE))
    recommend = FusedRecommend.load(_settings(small_repo, c.RECOMMEND_ENSEMBLE))
    search_catalog = FusedSearchCatalog.load(_settings(small_repo, c.SEARCH_CATALOG))
    recommend_catalog = FusedRecommendCatalog.load(_settings(small_repo, c.RECOMMEND_CATALOG))
    queries = ["wireless headphones", "helix red running shoes", "zzqx", "cheap waterproof tent for 4"]
    none = np.zeros(0, np.int64)
    for i in range(24):
        user = np.array([rng.choice(users) if i % 5 else 42], np.int64)
        cands = rng.choice(items, size=int(rng.integers(1, 80)), replace=False).astype(np.int64)
        k = np.array([int(rng.integers(1, 15))], np.int32)
        query = queries[i % len(queries)]
        q = np.array([query.encode()], object)
        got = search(user, q, cands, k)
        want = pipeline.search(int(user[0]), query, cands, int(k[0]))
        np.testing.assert_array_equal(got[c.TOP_ITEM_IDS], want[0])
        np.testing.assert_allclose(got[c.TOP_SCORES], want[1], atol=1e-5)
        got = recommend(user, cands, k)
        want = pipeline.recommend(int(user[0]), cands, int(k[0]))
        np.testing.assert_array_equal(got[c.TOP_ITEM_IDS], want[0])
        got = search_catalog(user, q, none, k)
        want = pipeline.search_catalog(int(user[0]), query, int(k[0]))
        np.testing.assert_array_equal(got[c.TOP_ITEM_IDS], want[0])
        context = cands[:1]
        got = recommend_catalog(user, context, none, k)
        want = pipeline.recommend_catalog(int(user[0]), int(k[0]), context)
        np.testing.assert_array_equal(got[c.TOP_ITEM_IDS], want[0])
    # the encoder ran once per distinct query: the unknown ones' borrowing and the ranking share it
    assert search.encoder.cache.misses == len(queries)
    assert search_catalog.encoder.cache.misses == len(queries)


@pytest.mark.slow
def test_a_query_encoded_alone_is_not_padded_and_embeds_the_same(small_repo):
    """The fused models run one query per encoder run, so its tokens keep their own length, not the batcher's
    bucket (the ensemble layout's ``query_tokens``), and the encoder masks padding: the same embedding, bit for
    bit, on one thread and on two."""
    search = FusedSearch.load(_settings(small_repo, c.SEARCH_ENSEMBLE))
    search_catalog = FusedSearchCatalog.load(_settings(small_repo, c.SEARCH_CATALOG))
    bucketed = QueryTokens.load(small_repo / c.QUERY_TOKENIZER / VERSION)
    sessions = [make_session(str(small_repo / c.TEXT_ENCODER / VERSION / "model.onnx"), t) for t in (1, 2)]
    lengths = set()
    for query in ("tent", "red shoes", "wireless noise cancelling headphones", "helix red running shoes size 9"):
        q = np.array([query.encode()], object)
        alone = search_catalog.tokens.tokens(q)
        ids, mask = search.store.tokens(query)
        np.testing.assert_array_equal(ids, alone[c.INPUT_IDS])
        assert mask.all() and ids.shape == mask.shape  # no padding at all
        padded = bucketed.tokens(q)
        assert padded[c.INPUT_IDS].shape[1] % c.QUERY_PAD_MULTIPLE == 0
        np.testing.assert_array_equal(padded[c.INPUT_IDS][:, : ids.shape[1]], ids)
        lengths.add(ids.shape[1])
        for session in sessions:
            (exact,) = session.run([c.SENTENCE_EMBEDDING], alone)
            (bucket,) = session.run([c.SENTENCE_EMBEDDING], padded)
            assert np.array_equal(exact, bucket), query
    # the queries' lengths fall in different places of the buckets: some were padded, some not
    assert any(n % c.QUERY_PAD_MULTIPLE for n in lengths) and len(lengths) >= 3


@pytest.mark.slow
def test_an_encoder_alone_on_the_node_runs_wide_and_answers_the_same(small_repo, tmp_path):
    """With ``encoder_alone_threads``, the encoder runs its wider session only while no other fused instance
    serves, and both sessions give the same embedding bit for bit (so the same ranking)."""
    path = tmp_path / "occupancy"
    mine, other = Occupancy(path), Occupancy(path)
    folders = {p: small_repo / p / VERSION for p in PARTS[c.SEARCH_CATALOG]}
    runs = []  # each encoder run's session: wide or not
    wide = FusedSearchCatalog.load(
        FusedSettings(folders, cache_entries=0, alone_threads=2), Serving(occupancy=mine, encoder_runs=runs.append)
    )
    narrow = FusedSearchCatalog.load(FusedSettings(folders, cache_entries=0))
    assert wide.encoder.wide is not None and narrow.encoder.wide is None
    call = Occupied(wide, mine)
    assert call.inputs == FusedSearchCatalog.inputs
    user, none, k = np.array([42], np.int64), np.zeros(0, np.int64), np.array([10], np.int32)
    for query in ("wireless headphones", "helix red running shoes", "cheap waterproof tent for 4", "zzqx"):
        tokens = narrow.tokens.tokens(np.array([query.encode()], object))
        ids, mask = tokens[c.INPUT_IDS], tokens[c.ATTENTION_MASK]
        assert np.array_equal(wide.encoder.wide.run(None, tokens)[0], narrow.encoder.session.run(None, tokens)[0])
        runs.clear()
        alone = call(user, np.array([query.encode()], object), none, k)
        assert runs == [True]  # nobody else served: the wide session ran
        with other.serving():  # another instance of the node is busy: the narrow one runs
            busy = call(user, np.array([query.encode()], object), none, k)
            wide.encoder.embed(ids, mask)
        assert runs == [True, False, False]
        want = narrow(user, np.array([query.encode()], object), none, k)
        for got in (alone, busy):
            np.testing.assert_array_equal(got[c.TOP_ITEM_IDS], want[c.TOP_ITEM_IDS])
            np.testing.assert_array_equal(got[c.TOP_SCORES], want[c.TOP_SCORES])
    assert mine.alone() and other.alone()  # nothing left marked busy
    # without an occupancy slot there is no wide session: the instance keeps to its threads
    lost = Occupancy(tmp_path / "missing" / "occupancy")
    assert (
        FusedSearchCatalog.load(FusedSettings(folders, alone_threads=2), Serving(occupancy=lost)).encoder.wide is None
    )
    for occ in (mine, other):
        occ.close()


@pytest.mark.unit
def test_the_fused_models_sizes_reach_their_configs_and_bad_ones_are_refused(capsys):
    by_name = spec_by_name(layout=FUSED)
    assert by_name[fused_name(c.SEARCH_ENSEMBLE)].instances == 2  # the default measured on 2 cores
    sized = {s.name: s for s in specs(layout=FUSED, sizes=FusedSizes(6, 2))}
    for call in CALLS:
        spec = sized[fused_name(call)]
        assert spec.instances == 6 and spec.parameters["intra_op_thread_count"] == "2"
    with pytest.raises(ValueError, match="fused threads: expected a whole number >= 1, got 0"):
        FusedSizes(2, 0)
    assert builders_main(["build", "--profile", "small", "--fused-instances", "0"]) == 2
    assert "--fused-instances / --fused-threads / --fused-alone-threads: fused instances" in capsys.readouterr().err
    # the encoder's threads when alone: on the models with an encoder, only where wider than their threads
    default = {s.name: s.parameters for s in specs(layout=FUSED)}
    for call in CALLS:
        has_encoder = c.TEXT_ENCODER in PARTS[call]
        assert default[fused_name(call)].get("encoder_alone_threads") == ("2" if has_encoder else None)
    never = {s.name: s.parameters for s in specs(layout=FUSED, sizes=FusedSizes(2, 1, 0))}
    assert all("encoder_alone_threads" not in never[fused_name(call)] for call in CALLS)
    with pytest.raises(ValueError, match="fused alone_threads: expected a whole number >= 0, got -1"):
        FusedSizes(2, 1, -1)


@pytest.mark.slow
def test_a_build_with_other_sizes_validates_and_keeps_them(small_build, tmp_path):
    out = tmp_path / "sized"
    build("cpu", "small", out=out, work=REPO_ROOT / "build" / "small", progress=False, fused_sizes=FusedSizes(3, 2))
    lines = validate(out)  # the manifest carries the sizes: the configs equal their specs
    assert any("search_fused: config ok" in line for line in lines)
    cfg = read_config(out / fused_name(c.SEARCH_ENSEMBLE))
    assert instance_count(cfg) == 3 and cfg.parameters["intra_op_thread_count"].string_value == "2"
    assert [g.rate_limiter.priority for g in cfg.instance_group] == [1, 1000, 1000**2]


def _stub_cpu_ticks(server, model: str) -> dict[int, int]:
    """CPU time (clock ticks) so far of each python-backend stub process of ``model`` under ``server``, by pid."""
    ticks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that ended meanwhile
            continue
        stub = argv[0].endswith(b"triton_python_backend_stub") and len(argv) > 1 and f"/{model}/".encode() in argv[1]
        if stub and int(fields[1]) == server.process.pid:
            ticks[int(stat.parent.name)] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


@pytest.mark.slow
def test_one_shopper_at_a_time_meets_one_fused_instance_and_a_load_meets_both(triton_server, known_ids, rng):
    """The fused models' instances are taken in their configs' priority order (rate limiter): sequential requests
    go to one instance (its caches stay warm), concurrent ones spread over both."""
    users, items = known_ids
    model = fused_name(c.SEARCH_ENSEMBLE)
    requests = [
        (int(rng.choice(users)), rng.choice(items, size=60, replace=False), f"helix shoes {i} wireless".encode())
        for i in range(360)
    ]
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    runs0 = _encoder_runs(triton_server, model)
    before = _stub_cpu_ticks(triton_server, model)
    assert len(before) == 2
    for user, cands, query in requests[:120]:  # unique queries: the encoder runs every time
        raw_call(client, user, cands, 10, query)
    after = _stub_cpu_ticks(triton_server, model)
    idle, busy = sorted(after[pid] - before[pid] for pid in before)
    assert busy >= 10 and idle * 5 <= busy, (idle, busy)  # alternating instances would give about half each
    runs1 = _encoder_runs(triton_server, model)
    wide, narrow = runs1["wide"] - runs0["wide"], runs1["narrow"] - runs0["narrow"]
    assert wide + narrow == 120  # one run per new query: the borrowing and the ranking share it
    assert wide >= 114, (wide, narrow)  # one shopper at a time: the node's other instances idle, the encoder widens

    def one_client(chunk: list) -> int:
        own = grpcclient.InferenceServerClient(triton_server.grpc_url)
        for user, cands, query in chunk:
            raw_call(own, user, cands, 10, query)
        return len(chunk)

    rest = requests[120:]
    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(one_client, [rest[i::6] for i in range(6)])) == len(rest)
    loaded = _stub_cpu_ticks(triton_server, model)
    second, first = sorted(loaded[pid] - after[pid] for pid in after)
    assert second * 4 >= first, (second, first)  # the busy first instance leaves requests to the second
    runs2 = _encoder_runs(triton_server, model)
    wide, narrow = runs2["wide"] - runs1["wide"], runs2["narrow"] - runs1["narrow"]
    assert wide + narrow == len(rest)
    assert narrow > wide, (wide, narrow)  # under load the other instance is busy: each keeps to its thread


def _encoder_runs(server, model: str) -> dict[str, float]:
    """The served model's ``shoprank_encoder_runs_total`` by session, once every run so far is sent (the counts
    reach the metrics port in the background, at most ``FLUSH_S`` late)."""
    time.sleep(2 * FLUSH_S)
    counts = model_counts(server.metrics_url, "shoprank_encoder_runs_total", model, "session")
    return {"wide": counts.get("wide", 0.0), "narrow": counts.get("narrow", 0.0)}
