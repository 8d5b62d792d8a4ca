"""runtime/backend.py inside a real python backend: errors map to status codes per request."""

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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("errors_repo")
    add_python_model(repo, "double", MODEL)
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
