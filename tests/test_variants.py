"""Compressed variants: each technique's contract, the quality gate, and publishing a variant."""

import json
from pathlib import Path

import numpy as np
import pytest

from builders.build import BuildError, build
from builders.learning.dcn import build_model
from builders.learning.rows import Rows
from builders.learning.text_encoder import pretrained_dir
from builders.repository.assemble import _check_onnx
from builders.repository.model_specs import spec_by_name
from builders.variants import calibration, distill, gate, lowrank, prune, quantize, run
from builders.variants.evaluate import encoder_contribution
from builders.variants.gate import QualityGateError, publishable
from runtime import contract as c
from runtime.ort_runner import make_session
from runtime.text import TextTokenizer
from tests.helpers import logged

REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL = REPO_ROOT / "build" / "small"


def tiny_ranker(seed=0):
    import torch

    torch.manual_seed(seed)
    return build_model(
        [3000, 50, 7, 7, 13, 5, 7], np.zeros(c.N_DENSE, np.float32), np.ones(c.N_DENSE, np.float32)
    ).eval()


def tiny_rows(n=64, seed=0):
    import torch

    rng = np.random.default_rng(seed)
    cat = np.stack([rng.integers(0, k, n) for k in (3000, 50, 7, 7, 13, 5, 7)], axis=1).astype(np.int64)
    dense = rng.normal(size=(n, c.N_DENSE)).astype(np.float32)
    return torch.from_numpy(cat), torch.from_numpy(dense)


@pytest.mark.unit
def test_gate_passes_within_the_margin_and_refuses_beyond_it_saying_by_how_much():
    ref = {"ndcg@10": 0.50}
    ok = gate.check("ranker/pruned", {"ndcg@10": 0.496}, ref)
    assert ok["passed"] and ok["relative_drop"] == pytest.approx(0.008)
    assert gate.check("ranker/better", {"ndcg@10": 0.51}, ref)["relative_drop"] < 0
    with pytest.raises(
        gate.QualityGateError,
        match=r"'encoder/tiny' refused: NDCG@10 0\.4900 is 2\.00% below the "
        r"reference 0\.5000, more than the allowed 1\.00%",
    ):
        gate.check("encoder/tiny", {"ndcg@10": 0.49}, ref)
    assert gate.check("encoder/tiny", {"ndcg@10": 0.49}, ref, margin=0.025)["passed"]
    with pytest.raises(ValueError, match="margin"):
        gate.check("x", ref, ref, margin=1.5)
    with pytest.raises(gate.QualityGateError, match="no 'ndcg@10' measurement"):
        gate.check("x", {"auc": 0.7}, ref)
    with pytest.raises(gate.QualityGateError, match=r"mean cosine to the teacher on the query pool is 0\.9000, below"):
        gate.check("encoder/int8", {"ndcg@10": 0.50, "cosine_queries": 0.90}, ref)
    assert gate.check("encoder/int8", {"ndcg@10": 0.50, "cosine_queries": 0.99}, ref)["passed"]


@pytest.mark.unit
def test_encoder_variants_must_keep_most_of_what_the_encoder_adds_to_searches():
    ref = {"ndcg@10": 0.50}
    weak = {"ndcg@10": 0.4999, "cosine_queries": 0.99, "encoder_gain_retained": 0.55, "searches_metric": "ndcg@10_true"}
    with pytest.raises(
        gate.QualityGateError,
        match=r"keeps 55% of what the encoder adds to the searches' "
        r"NDCG@10_TRUE, less than 80% \(its overall NDCG@10 is 0\.02% below",
    ):
        gate.check("encoder/x", weak, ref)
    assert gate.check("encoder/y", {**weak, "encoder_gain_retained": 0.93}, ref)["passed"]


@pytest.mark.unit
def test_encoder_contribution_is_measured_against_the_reference_similarity():

    # two search lists of 3 items; the relevant item is the one the reference similarity points at
    gain = np.array([0, 0, 3, 3, 0, 0], np.float32)
    ref_sim = np.array([-1, -1, 2, 2, -1, -1], np.float32)
    rows = Rows(
        cat=None,
        dense=None,
        sim=ref_sim,
        cosine=ref_sim,
        click=gain > 0,
        gain=gain,
        relevance=None,
        offsets=np.array([0, 3, 6]),
        query=np.array([0, 0, 0, 1, 1, 1]),
        item=np.arange(6),
        understood=np.array([False, False]),
    )
    logit = np.array([1, 0.5, 0, 1, 0.5, 0], np.float32)  # alone, the logit ranks the relevant item last
    weight = np.ones(6, np.float32)
    same = encoder_contribution(rows, logit, weight, ref_sim)
    assert same["encoder_gain"] > 0 and same["encoder_gain_retained"] == pytest.approx(1.0)
    blind = encoder_contribution(rows, logit, weight, np.zeros(6, np.float32))
    assert blind["encoder_gain_retained"] == pytest.approx(0.0) and blind["searches_metric"] == "ndcg@10"


@pytest.mark.unit
def test_pruning_removes_whole_neurons_and_keep_all_changes_nothing():
    import torch

    model = tiny_ranker()
    cat, dense = tiny_rows()
    pruned = prune.prune_deep(model, keep=0.5)
    assert [m.out_features for m in pruned.deep if isinstance(m, torch.nn.Linear)] == [64, 32]
    assert prune.parameter_count(pruned) < prune.parameter_count(model)
    with torch.no_grad():
        assert pruned(cat, dense)[0].shape == (len(cat), 1)
        same = prune.prune_deep(model, keep=1.0)
        np.testing.assert_allclose(same(cat, dense)[0].numpy(), model(cat, dense)[0].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="keep"):
        prune.prune_deep(model, keep=0.0)


@pytest.mark.unit
def test_low_rank_factorisation_is_exact_for_low_rank_weights_and_smaller():
    import torch

    model = tiny_ranker()
    with torch.no_grad():  # make the big table and the cross layers exactly low-rank
        table = model.embeddings[0].weight
        table.copy_(torch.randn(table.shape[0], 4) @ torch.randn(4, table.shape[1]))
        for layer in model.cross:
            layer.weight.copy_(torch.randn(layer.out_features, 8) @ torch.randn(8, layer.in_features) / 10)
    small = lowrank.factorize(model, embedding_rank=4, cross_rank=8, min_rows=1000)
    assert type(small.embeddings[0]).__name__ == "LowRankEmbedding"
    assert isinstance(small.embeddings[1], torch.nn.Embedding)  # 50 rows: below min_rows, left whole
    assert prune.parameter_count(small) < prune.parameter_count(model)
    cat, dense = tiny_rows()
    with torch.no_grad():
        for a, b in zip(small(cat, dense), model(cat, dense), strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.unit
def test_encoder_calibration_batches_use_the_served_length_buckets():

    tok = TextTokenizer(pretrained_dir() / "tokenizer.json")
    texts = ["shoes", "red running shoes", "a much longer product title with many words in it for the encoder"] * 20
    feeds = calibration.encoder_batches(tok, texts, batch=8, max_batches=100)
    widths = {f[c.INPUT_IDS].shape[1] for f in feeds}
    assert len(widths) >= 2 and all(w % c.QUERY_PAD_MULTIPLE == 0 for w in widths)
    assert all(len(f[c.INPUT_IDS]) <= 8 for f in feeds) and sum(len(f[c.INPUT_IDS]) for f in feeds) == len(texts)
    reader = calibration.FeedReader(feeds)
    assert sum(1 for _ in iter(reader.get_next, None)) == len(feeds)
    reader.rewind()
    assert reader.get_next() is feeds[0]
    with pytest.raises(ValueError, match="at least one"):
        calibration.FeedReader([])


@pytest.mark.unit
def test_quantized_rankers_keep_the_contract_and_shrink(small_dcn, tmp_path):

    src = small_dcn[0] / "ranker" / "model.onnx"  # the DCN's (INT8 quantizes its matrix products)
    rng = np.random.default_rng(0)
    cat = rng.integers(0, 5, (256, c.N_CAT)).astype(np.int64)
    dense = rng.random((256, c.N_DENSE), dtype=np.float32)
    dyn = quantize.dynamic(src, tmp_path / "dyn.onnx")
    sta = quantize.static(
        src,
        tmp_path / "static.onnx",
        calibration.ranker_batches(cat, dense, batch=64),
        op_types=("MatMul", "Gemm", "Gather"),
    )
    ref = make_session(str(src)).run(None, {c.CAT_FEATURES: cat, c.DENSE_FEATURES: dense})[0]
    for path in (dyn, sta):
        _check_onnx(spec_by_name()[c.RANKER], path)  # same inputs, outputs, dtypes, dynamic batch axis
        assert path.stat().st_size < src.stat().st_size / 2
        got = make_session(str(path)).run(None, {c.CAT_FEATURES: cat, c.DENSE_FEATURES: dense})[0]
        assert np.corrcoef(ref[:, 0], got[:, 0])[0, 1] > 0.95  # INT8 is close to fp32, not equal


@pytest.mark.slow
def test_distilled_student_has_two_layers_and_the_encoder_contract(tmp_path):

    texts = ["red running shoes", "steel blender 1200w", "yoga mat"] * 4
    targets = np.random.default_rng(0).normal(size=(len(texts), c.EMBED_DIM)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    student, history = distill.distill(
        texts, targets, texts[:3], targets[:3], epochs=1, batch=4, max_steps=2, query_repeats=1, progress=False
    )
    assert len(student.backbone.encoder.layer) == len(distill.KEEP_LAYERS) == 2
    assert history and np.isfinite(history[0]["mean_loss"])
    out = distill.export_onnx(student, tmp_path / "student.onnx")
    _check_onnx(spec_by_name()[c.TEXT_ENCODER], out)


@pytest.mark.unit
def test_publishing_a_variant_goes_through_the_gate(tmp_path):

    work = tmp_path / "small"
    (work / "variants").mkdir(parents=True)
    variant_file = work / "variants" / "ranker" / "pruned.onnx"
    variant_file.parent.mkdir()
    variant_file.write_bytes(b"onnx")
    with pytest.raises(QualityGateError, match="no measured variants"):
        publishable(work, "ranker", "pruned", 0.01)
    report = {
        "ranker": {
            "fp32": {"quality": {"ndcg@10": 0.60}, "file": "ref.onnx"},
            "pruned": {"quality": {"ndcg@10": 0.585}, "file": str(variant_file)},
        }
    }
    (work / "variants" / "report.json").write_text(json.dumps(report))
    with pytest.raises(QualityGateError, match=r"2\.50% below the reference 0\.6000"):
        publishable(work, "ranker", "pruned", 0.01)
    path, verdict = publishable(work, "ranker", "pruned", 0.03)
    assert path == variant_file and verdict["passed"]
    with pytest.raises(QualityGateError, match="was not measured"):
        publishable(work, "ranker", "low-rank", 0.03)


@pytest.mark.slow
def test_a_build_serving_the_gbdt_measures_it_and_skips_the_dcn_compressions(small_build):

    if run.served_ranker_kind(SMALL) != "gbdt":
        pytest.skip("the small build serves the DCN: the compressions are tested below")  # auto picked the DCN
    with logged() as logs:
        report = run.run(
            SMALL,
            REPO_ROOT / "build" / "encoder" / "model.onnx",
            only=["ranker/pruned"],
            progress=False,
            speed_rounds=1,
        )
    assert set(report["ranker"]) == {"fp32"} and report["ranker"]["fp32"]["quality"]["auc"] > 0.5
    assert any("ranker/pruned skipped" in line and "serves the gbdt ranker" in line for line in logs)


@pytest.mark.slow
def test_variants_are_measured_then_published_through_the_gate(small_dcn, tmp_path):
    """On a build that serves the DCN-v2 (``ranker.kind: dcn``): the compressions are of its weights."""

    work, config = small_dcn
    assert run.served_ranker_kind(work) == "dcn"
    report = run.run(
        work,
        REPO_ROOT / "build" / "encoder" / "model.onnx",
        only=["encoder/int8-dynamic", "ranker/pruned"],
        progress=False,
        speed_rounds=1,
    )
    assert set(report["encoder"]) == {"fp32", "int8-dynamic"} and set(report["ranker"]) == {"fp32", "pruned"}
    enc, ref = report["encoder"]["int8-dynamic"], report["encoder"]["fp32"]
    assert enc["mb"] < ref["mb"] / 2 and enc["speed"]["p50_ms_8tok"] > 0
    assert 0.8 < enc["quality"]["cosine_queries"] < 1.0 and ref["quality"]["cosine_queries"] > 0.9999
    pruned = report["ranker"]["pruned"]
    assert pruned["build"]["parameters"] > 0 and 0.0 < pruned["quality"]["auc"] < 1.0
    assert report["ranker"]["fp32"]["gate"]["relative_drop"] == 0.0
    assert json.loads((work / "variants" / "report.json").read_text())["ranker"]["pruned"]["mb"] == pruned["mb"]

    out = tmp_path / "repo"
    drop = pruned["gate"]["relative_drop"]
    published = build(
        "cpu",
        None,
        config=config,
        out=out,
        work=work,
        progress=False,
        ranker_variant="pruned",
        quality_margin=max(drop, 0.0) + 0.01,
    )
    assert (out / c.RANKER / "1" / "model.onnx").read_bytes() == Path(pruned["file"]).read_bytes()
    assert published["published_variants"]["ranker"]["variant"] == "pruned"
    if drop > 0:  # a margin below the measured drop refuses the variant, naming the drop
        with pytest.raises(BuildError, match=f"{drop:.2%} below"):
            build(
                "cpu",
                None,
                config=config,
                out=tmp_path / "refused",
                work=work,
                progress=False,
                ranker_variant="pruned",
                quality_margin=drop / 2,
            )
