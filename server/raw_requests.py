"""Raw tritonclient requests for the tests and `make bench` (backend services use the SDK in client/)."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient

from runtime import contract as c


def tensor(name: str, array: np.ndarray, dtype: str) -> grpcclient.InferInput:
    inp = grpcclient.InferInput(name, list(array.shape), dtype)
    inp.set_data_from_numpy(array)
    return inp


def request_inputs(user_id: int, item_ids, k: int, query: bytes | None = None) -> list:
    inputs = [tensor(c.USER_ID, np.array([user_id], np.int64), "INT64")]
    if query is not None:
        inputs.append(tensor(c.QUERY, np.array([query], dtype=object), "BYTES"))
    inputs += [
        tensor(c.ITEM_IDS, np.asarray(item_ids, np.int64), "INT64"),
        tensor(c.TOP_K, np.array([k], np.int32), "INT32"),
    ]
    return inputs


def call(client: grpcclient.InferenceServerClient, user_id: int, item_ids, k: int, query: bytes | None = None):
    model = c.SEARCH_ENSEMBLE if query is not None else c.RECOMMEND_ENSEMBLE
    result = client.infer(model, request_inputs(user_id, item_ids, k, query))
    return result.as_numpy(c.TOP_ITEM_IDS), result.as_numpy(c.TOP_SCORES)
