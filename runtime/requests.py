"""Request checks shared by every served model: each wrong field is an ``InvalidInput`` naming it.

Documented behaviour for unusual requests (see docs/serving.md):
* empty ITEM_IDS, more than MAX_CANDIDATES, duplicate ids: INVALID_ARGUMENT naming ITEM_IDS;
* empty / whitespace QUERY, non-UTF-8 bytes, over MAX_QUERY_BYTES: INVALID_ARGUMENT naming QUERY.
"""

from __future__ import annotations

import numpy as np

from runtime.arrays import Array
from runtime.contract import (
    MAX_CANDIDATES,
    MAX_QUERY_BYTES,
)
from runtime.errors import InvalidInput


def decode_query(raw: object) -> str:
    """The QUERY tensor's single element as text, or InvalidInput naming QUERY."""
    if isinstance(raw, np.ndarray):
        if raw.size != 1:
            raise InvalidInput("QUERY", f"expected exactly 1 element, got {raw.size}")
        raw = raw.reshape(-1)[0]
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, (bytes, bytearray)):
        raise InvalidInput("QUERY", f"expected bytes, got {type(raw).__name__}")
    if len(raw) > MAX_QUERY_BYTES:
        raise InvalidInput("QUERY", f"{len(raw)} bytes is longer than the limit of {MAX_QUERY_BYTES}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput("QUERY", f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})") from None
    if not text.strip():
        raise InvalidInput("QUERY", "empty; send requests without a query to the 'recommend' model")
    return text


def _one_dimensional(field: str, values: Array) -> Array:
    ids = np.asarray(values)
    if ids.ndim != 1:
        raise InvalidInput(field, f"expected a 1-D list, got shape {list(ids.shape)}")
    return ids


def check_id_list(field: str, values: Array, limit: int = MAX_CANDIDATES) -> Array:
    """An id list that may be empty (EXCLUDE_IDS, CONTEXT_ITEM_IDS) as 1-D int64, or InvalidInput naming it."""
    ids = _one_dimensional(field, values)
    if ids.dtype != np.int64:
        raise InvalidInput(field, f"expected INT64, got {ids.dtype}")
    if ids.size > limit:
        raise InvalidInput(field, f"{ids.size} ids is more than the limit of {limit}")
    return ids


def check_item_ids(item_ids: Array) -> Array:
    """The candidate list as a 1-D int64 array, or InvalidInput naming ITEM_IDS."""
    ids = _one_dimensional("ITEM_IDS", item_ids)
    if ids.size == 0:
        raise InvalidInput("ITEM_IDS", "empty: send at least 1 candidate")
    if ids.size > MAX_CANDIDATES:
        raise InvalidInput("ITEM_IDS", f"{ids.size} candidates is more than the limit of {MAX_CANDIDATES}")
    if ids.dtype != np.int64:
        raise InvalidInput("ITEM_IDS", f"expected INT64, got {ids.dtype}")
    uniq = np.unique(ids)
    if uniq.size != ids.size:
        sorted_ids = np.sort(ids)
        dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]][0]
        raise InvalidInput("ITEM_IDS", f"duplicate id {int(dup)}: each candidate may appear once")
    return ids


def check_embedding(embedding: Array, dim: int, field: str = "CONTEXT_EMBEDDING") -> Array:
    """One query's embedding ``[1, D]`` (or ``[D]``) as ``[D]`` float32, or InvalidInput naming ``field``."""
    arr = np.asarray(embedding, np.float32).reshape(-1)
    if arr.shape[0] != dim:
        raise InvalidInput(field, f"expected {dim} values, got {arr.shape[0]}")
    return arr


def check_user_id(user_id: Array) -> int:
    arr = np.asarray(user_id)
    if arr.size != 1:
        raise InvalidInput("USER_ID", f"expected exactly 1 element, got {arr.size}")
    return int(arr.reshape(-1)[0])


def check_top_k(top_k: Array) -> int:
    arr = np.asarray(top_k)
    if arr.size != 1:
        raise InvalidInput("TOP_K", f"expected exactly 1 element, got {arr.size}")
    k = int(arr.reshape(-1)[0])
    if k < 1:
        raise InvalidInput("TOP_K", f"must be at least 1, got {k}")
    return k
