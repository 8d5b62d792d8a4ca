"""runtime/backend.py inside a real python backend: errors map to status codes per request, in a model that
takes one request per execution and in one that batches (``serve_call``)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from server.launcher import ServerOptions, TritonServer
from server.raw_requests import tensor
from tests.helpers import add_python_model

pytestmark = pytest.mark.triton

MODEL = """
import triton_python_backend_utils as pb_utils
import numpy as np
from runtime.backend import serve
from runtime.errors import InvalidInput

def handler(x):
    if x[0] < 0:
        raise InvalidInput("X", "must not be negative")
    if x[0] == 13:
        raise ZeroDivisionError("unlucky")
    return {"Y": x * 2}

class TritonPythonModel:
    def execute(self, requests):
        return serve(pb_utils, requests, ("X",), handler, pb_utils.Logger)
"""


# serve_call on a batching model: each execution's valid inputs reach ``prepare`` first (where there are two or
# more), whose size each answer reports; X = 7 makes ``prepare`` itself fail, which its requests must not notice
BATCHED = """
import time
import triton_python_backend_utils as pb_utils
from runtime.backend import serve_call
from runtime.errors import InvalidInput


class Call:
    inputs = ("X",)
    batched = True

    def __init__(self):
        self.prepared = 1

    def prepare(self, batch):
        if any(int(x[0]) == 7 for (x,) in batch):
            raise RuntimeError("prepare exploded")
        self.prepared = len(batch)

    def __call__(self, x, build_values=False, options=None):
        time.sleep(0.02)  # the next requests queue meanwhile: the batcher gives them to one execution
        if x[0] < 0:
            raise InvalidInput("X", "must not be negative")
        out = {"Y": x * 2, "PREPARED": x[:1] * 0 + self.prepared}
        self.prepared = 1
        return out


class TritonPythonModel:
    def initialize(self, args):
        self.call = Call()

    def execute(self, requests):
        return serve_call(pb_utils, requests, self.call, pb_utils.Logger)
"""

BATCHED_CONFIG = """
backend: "python"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_INT64 dims: [ -1 ] allow_ragged_batch: true } ]
output [ { name: "Y" data_type: TYPE_INT64 dims: [ -1 ] }, { name: "PREPARED" data_type: TYPE_INT64 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 0 }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("errors_repo")
    add_python_model(repo, "double", MODEL)
    add_python_model(repo, "batched", BATCHED, BATCHED_CONFIG)
    with TritonServer(ServerOptions(model_repository=repo, log_file=repo / "log.txt")) as srv:
        yield srv


def infer(server, value):
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        return client.infer("double", [tensor("X", np.array([value], np.int64), "INT64")]).as_numpy("Y")


def test_invalid_input_is_invalid_argument(server):
    with pytest.raises(InferenceServerException) as err:
        infer(server, -1)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "X: must not be negative" in err.value.message()


def test_unexpected_exception_is_internal_and_the_model_keeps_serving(server):
    with pytest.raises(InferenceServerException) as err:
        infer(server, 13)
    assert err.value.status() == "StatusCode.INTERNAL"
    assert "ZeroDivisionError: unlucky" in err.value.message()
    assert infer(server, 4).tolist() == [8]


def infer_batched(server, values: list[int]) -> tuple[list[int], int] | InferenceServerException:
    """One request of ``values`` (with the batch axis of 1) to the batching model: (Y, the prepared batch's size)
    or the error."""
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        try:
            out = client.infer("batched", [tensor("X", np.array([values], np.int64), "INT64")])
        except InferenceServerException as err:
            return err
        return out.as_numpy("Y")[0].tolist(), int(out.as_numpy("PREPARED")[0][0])


def test_a_batching_model_answers_each_request_of_an_execution_as_its_own(server):
    """Concurrent requests of different lengths share executions: each gets its own answer with its batch axis, a
    bad one its own INVALID_ARGUMENT, and ``prepare`` saw the executions' valid requests together."""
    values = [[i] * (1 + i % 3) if i % 5 else [-i - 1] for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda v: infer_batched(server, v), values))
    for sent, got in zip(values, answers, strict=True):
        if sent[0] < 0:
            assert isinstance(got, InferenceServerException) and got.status() == "StatusCode.INVALID_ARGUMENT"
            assert "X: must not be negative" in got.message()
        else:
            assert not isinstance(got, InferenceServerException), got
            assert got[0] == [2 * v for v in sent]
    assert max(got[1] for got in answers if not isinstance(got, InferenceServerException)) > 1


def test_a_batching_model_whose_preparation_fails_still_answers_every_request(server):
    with ThreadPoolExecutor(8) as pool:  # 7: every execution of two or more fails in prepare
        answers = list(pool.map(lambda v: infer_batched(server, [v]), [7] * 16))
    assert [a[0] for a in answers] == [[14]] * 16
    assert (
        "preparation failed, its requests run alone: RuntimeError: prepare exploded"
        in server.options.log_path.read_text()
    )


def test_a_batching_model_refuses_a_request_of_two_by_name(server):
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        with pytest.raises(InferenceServerException) as err:
            client.infer("batched", [tensor("X", np.array([[1], [2]], np.int64), "INT64")])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "X: expected one request's tensor (a batch axis of 1), got shape [2, 1]" in err.value.message()
