"""The item_scan model (builders/repository/item_scan.py) and retrieval through it (runtime/scan.py)."""

from __future__ import annotations

import numpy as np
import pytest

from builders.repository import item_scan
from runtime import contract as c
from runtime.ort_runner import make_session, run_batched
from runtime.scan import ScanIndex, ort_scan, scan_inputs

pytestmark = pytest.mark.unit


def _table(folder, items=600, dim=32, dtype=np.float16, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = np.vstack([vectors, np.zeros((1, dim), np.float32)]).astype(dtype)  # the zero row of unknown items
    path = folder / "item_embeddings.npy"
    np.save(path, table)
    return path, table


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_the_scan_returns_the_exact_nearest_rows_of_the_table(tmp_path, dtype):
    path, table = _table(tmp_path, dtype=dtype)
    model = item_scan.export(path, tmp_path / item_scan.SCAN_FILE)
    assert model.stat().st_size < 4096  # the table is referenced, not copied into the model
    scan = ort_scan(model)
    rng = np.random.default_rng(1)
    exact_table = table[:-1].astype(np.float32)
    for _ in range(5):
        vector = rng.standard_normal(table.shape[1]).astype(np.float32)
        rows, scores = scan(vector, 50)
        exact = exact_table @ vector
        want = np.argsort(-exact, kind="stable")[:50]
        assert len(set(rows.tolist()) & set(want.tolist())) >= 49  # ties at the float16 rounding may swap
        np.testing.assert_allclose(scores, exact[rows], rtol=1e-2, atol=1e-2)
        assert (np.diff(scores) <= 0).all()  # best first


def test_the_zero_row_is_never_returned_and_depth_is_capped_at_the_items(tmp_path):
    path, table = _table(tmp_path, items=40)
    scan = ort_scan(item_scan.export(path, tmp_path / item_scan.SCAN_FILE))
    rows, scores = scan(np.ones(table.shape[1], np.float32), 1000)
    assert sorted(rows.tolist()) == list(range(40))  # every item once, not row 40 (zeros)
    assert len(scores) == 40


def test_a_batch_answers_every_vector_as_deep_as_its_deepest_request(tmp_path):
    """What the dynamic batcher does to concurrent requests (run_batched is the served stand-in's batching)."""
    path, table = _table(tmp_path)
    model = item_scan.export(path, tmp_path / item_scan.SCAN_FILE)
    session = make_session(str(model))
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal(table.shape[1]).astype(np.float32) for _ in range(2))
    out = run_batched(session, [scan_inputs(a, 3), scan_inputs(b, 10)], [c.SCAN_ROWS, c.SCAN_SCORES])
    assert [o[c.SCAN_ROWS].shape for o in out] == [(1, 10), (1, 10)]
    alone, _ = ort_scan(model)(a, 3)
    assert out[0][c.SCAN_ROWS][0, :3].tolist() == alone.tolist()
    index = ScanIndex(lambda v, n: (out[0][c.SCAN_ROWS][0], out[0][c.SCAN_SCORES][0]), 600, None)
    rows, scores = index.search(a, 3)  # the retrieval model keeps what it asked for
    assert rows.tolist() == alone.tolist() and len(scores) == 3


def test_a_scan_that_returns_too_few_rows_is_an_error_not_a_short_list():
    index = ScanIndex(lambda v, n: (np.arange(2), np.ones(2, np.float32)), 100, None)
    with pytest.raises(RuntimeError, match="asked for 5 rows, got 2"):
        index.search(np.ones(4, np.float32), 5)


def test_the_model_must_sit_beside_its_table_and_the_table_must_be_a_float_matrix(tmp_path):
    path, _ = _table(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ValueError, match="beside its table"):
        item_scan.export(path, tmp_path / "elsewhere" / "model.onnx")
    np.save(tmp_path / "ids.npy", np.arange(10))
    with pytest.raises(ValueError, match="expected a C-ordered"):
        item_scan.export(tmp_path / "ids.npy", tmp_path / "m.onnx")
    np.save(tmp_path / "ints.npy", np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match="is not float16 or float32"):
        item_scan.export(tmp_path / "ints.npy", tmp_path / "m.onnx")


def _cuda_missing() -> str | None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return None
    return (
        "needs onnxruntime-gpu and an NVIDIA GPU (this machine has the CPU onnxruntime package and no GPU); "
        "on a GPU host: pip install onnxruntime-gpu, then pytest -m gpu tests/test_scan.py"
    )


@pytest.mark.gpu
@pytest.mark.skipif(_cuda_missing() is not None, reason=str(_cuda_missing()))
def test_the_scan_on_the_gpu_finds_what_the_cpu_finds(tmp_path):
    import onnxruntime as ort

    path, table = _table(tmp_path, items=20_000, dim=384)
    model = item_scan.export(path, tmp_path / item_scan.SCAN_FILE)
    gpu = ort.InferenceSession(str(model), providers=["CUDAExecutionProvider"])
    cpu = ort_scan(model)
    rng = np.random.default_rng(3)
    for _ in range(5):
        vector = rng.standard_normal(384).astype(np.float32)
        scores, rows = gpu.run([c.SCAN_SCORES, c.SCAN_ROWS], scan_inputs(vector, 600))
        want, want_scores = cpu(vector, 600)
        assert len(set(rows[0].tolist()) & set(want.tolist())) >= 594  # float16 accumulation order may differ
        np.testing.assert_allclose(np.sort(scores[0]), np.sort(want_scores), atol=5e-2)
