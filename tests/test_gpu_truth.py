"""The GPU measurement script, run dry on this machine's CPU so it cannot rot while no GPU is lent.

``python -m benchmarks.gpu_truth --device cpu --small``: what travels is prepared from the small build,
every part runs, and the report renders the tables ``docs/gpu.md`` takes. The parity checks are real: on
the CPU the DCN-v2 and LightGBM must give the build machine's own numbers, the scan the float32 top-100,
and the encoder ONNX Runtime's embeddings.
"""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import gpu_run, gpu_truth
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dry_run(small_build, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-truth")
    manifest = gpu_truth.prepare(REPO_ROOT / "build" / "small", root / "bundle", rows=512, texts=32, wheels=False)
    results = gpu_run.run(root / "bundle", root / "out", "cpu", small=True)
    return root, manifest, results


def test_the_bundle_fits_one_carry_and_holds_every_part(dry_run):
    root, manifest, _ = dry_run
    assert 0 < manifest["bytes"] <= gpu_truth.CARRY_LIMIT
    assert manifest["encoders"] == {"bundled": "encoder-bundled"} and manifest["rows"] == 512
    for name in ("ranker.pt", "gbdt_model.txt", "ranker_rows.npz", "encoder-bundled/reference.npz"):
        assert (root / "bundle" / name).exists(), name


def test_every_part_runs_and_agrees_with_the_cpu_references(dry_run):
    root, _, results = dry_run
    assert json.loads((root / "out" / gpu_run.RESULTS_FILE).read_text()) == results
    ranker = results["ranker"]
    assert set(ranker) == {"dcn/fp32", "dcn/fp16", "dcn/bf16", *(k for k in ranker if k.startswith("lambdamart/"))}
    assert ranker["dcn/fp32"]["max_abs_diff_vs_cpu_fp32"] <= 1e-4  # the same weights, the same rows
    assert all(e["max_abs_diff_vs_here"] <= 1e-9 for k, e in ranker.items() if k.startswith("lambdamart/"))
    assert all(set(e["batches"]) == {"100", "1000"} for e in ranker.values())
    scan = results["item_scan"]["20000"]
    assert scan["top100_agreement_vs_cpu_fp32"] == 1.0 and set(scan["batches"]) == {"1", "4", "16"}
    encoder = results["encoder"]
    assert encoder["bundled/fp32"]["min_cosine_vs_onnxruntime_cpu"] >= 0.999
    assert all(e["titles_per_s"] > 0 and e["query_batch_1"]["p50_ms"] > 0 for e in encoder.values())


def test_the_report_fills_docs_gpu_md_and_says_a_dry_run_is_not_a_gpu_figure(dry_run, tmp_path):
    _, _, results = dry_run
    text = gpu_run.report(results, "python -m benchmarks.gpu_truth --device cpu --small")
    assert "CPU only" in text and "not GPU figures" in text and "dcn/bf16" in text and "20,000" in text
    doc = tmp_path / "gpu.md"
    shutil.copy(REPO_ROOT / "docs" / "gpu.md", doc)
    gpu_truth.write_doc(doc, text)
    written = doc.read_text()
    assert text in written and "No GPU has been lent yet" not in written
    assert written.count(gpu_truth.START) == 1 and written.count(gpu_truth.END) == 1
