import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from runtime.ort_runner import make_session, run_batched

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """y = x @ W (x: [n, 3] -> y: [n, 2])."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], [1, 2, 3, 4, 5, 6])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    onnx.save(model, path)
    return make_session(str(path))


def test_batched_run_equals_separate_runs(session):
    reqs = [{"x": np.random.default_rng(i).random((n, 3), dtype=np.float32)} for i, n in enumerate((1, 4, 2))]
    together = run_batched(session, reqs, ["y"])
    for req, out in zip(reqs, together, strict=True):
        np.testing.assert_allclose(out["y"], session.run(["y"], req)[0], rtol=1e-6)
        assert out["y"].shape == (len(req["x"]), 2)


def test_empty_request_list(session):
    assert run_batched(session, [], ["y"]) == []
