"""The wire contract with the served ensembles, client-side validation, tensors in and results out.

Shared by the sync and the asyncio client: everything here is pure (no I/O).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import InferInput

from shoprank_client.errors import ContractMismatch, InvalidRequest
from shoprank_client.ids import stable_id
from shoprank_client.listing import parse_facets, parse_info
from shoprank_client.types import RankedItem

SEARCH_MODEL = "search"
RECOMMEND_MODEL = "recommend"
SEARCH_CATALOG_MODEL = "search_catalog"  # retrieval from the whole catalogue: no candidate list
RECOMMEND_CATALOG_MODEL = "recommend_catalog"
MAX_CANDIDATES = 1000
MAX_QUERY_BYTES = 1024
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_INT32_MAX = int(np.iinfo(np.int32).max)

# name -> (datatype, shape) the SDK sends and reads. Must equal the served ensembles' metadata.
CONTRACT: dict[str, dict[str, dict[str, tuple[str, list[int]]]]] = {
    SEARCH_MODEL: {
        "inputs": {
            "USER_ID": ("INT64", [1]),
            "QUERY": ("BYTES", [1]),
            "ITEM_IDS": ("INT64", [-1]),
            "TOP_K": ("INT32", [1]),
        },
        "outputs": {"TOP_ITEM_IDS": ("INT64", [-1]), "TOP_SCORES": ("FP32", [-1])},
    },
    RECOMMEND_MODEL: {
        "inputs": {"USER_ID": ("INT64", [1]), "ITEM_IDS": ("INT64", [-1]), "TOP_K": ("INT32", [1])},
        "outputs": {"TOP_ITEM_IDS": ("INT64", [-1]), "TOP_SCORES": ("FP32", [-1])},
    },
    SEARCH_CATALOG_MODEL: {
        "inputs": {
            "USER_ID": ("INT64", [1]),
            "QUERY": ("BYTES", [1]),
            "EXCLUDE_IDS": ("INT64", [-1]),
            "TOP_K": ("INT32", [1]),
        },
        "outputs": {"TOP_ITEM_IDS": ("INT64", [-1]), "TOP_SCORES": ("FP32", [-1])},
    },
    RECOMMEND_CATALOG_MODEL: {
        "inputs": {
            "USER_ID": ("INT64", [1]),
            "CONTEXT_ITEM_IDS": ("INT64", [-1]),
            "EXCLUDE_IDS": ("INT64", [-1]),
            "TOP_K": ("INT32", [1]),
        },
        "outputs": {"TOP_ITEM_IDS": ("INT64", [-1]), "TOP_SCORES": ("FP32", [-1])},
    },
}
MAX_ID_LIST = 1000  # exclude / context ids per request (the server's limit too)
# Outputs a served model may have beside CONTRACT's (a release built before them has not): the shop's own
# id of each ranked item, so a string-id shop gets its SKUs back from the catalogue models too
OPTIONAL_OUTPUTS = {
    "TOP_ITEM_KEYS": ("BYTES", [-1]),
    # the variant groups, their matched variants and the page's summary (matches, facets): shoprank_client.listing
    "TOP_GROUP_KEYS": ("BYTES", [-1]),
    "TOP_GROUP_MATCHES": ("INT32", [-1]),
    "RESULT_INFO": ("BYTES", [1]),
}


def _user(user_id: object) -> int:
    if isinstance(user_id, str):
        return stable_id(user_id)  # a shop with string user ids (see shoprank_client.ids)
    if isinstance(user_id, bool) or not isinstance(user_id, (int, np.integer)):
        raise InvalidRequest(f"user_id: expected an integer, got {type(user_id).__name__}", "user_id")
    if not _INT64_MIN <= int(user_id) <= _INT64_MAX:
        raise InvalidRequest(f"user_id: {user_id} does not fit in int64", "user_id")
    return int(user_id)


def _string_candidates(candidates: Sequence[str]) -> tuple[npt.NDArray[np.int64], dict[int, str]]:
    """String ids (SKUs) -> their stable INT64 ids, and the map back for the response."""
    try:
        keys = {stable_id(c): c for c in candidates}  # one pass: a non-string has no .encode
    except (AttributeError, TypeError):
        bad = next(c for c in candidates if not isinstance(c, str))
        raise InvalidRequest(
            f"candidates: mixes strings and {type(bad).__name__} ({bad!r}); send all ids of one kind", "candidates"
        ) from None
    if len(keys) != len(candidates):
        seen: set[str] = set()
        for c in candidates:
            if c in seen:
                raise InvalidRequest(f"candidates: duplicate id {c!r}", "candidates")
            seen.add(c)
    return np.fromiter(keys, np.int64, len(keys)), keys


def _candidates(candidates: Sequence[int | str] | npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int64]:
    try:
        ids = np.asarray(candidates)
    except (TypeError, ValueError) as err:
        raise InvalidRequest(f"candidates: not a list of integers ({err})", "candidates") from None
    if ids.ndim != 1:
        raise InvalidRequest(f"candidates: expected a flat list, got shape {list(ids.shape)}", "candidates")
    if ids.size == 0:
        raise InvalidRequest("candidates: empty, send at least 1", "candidates")
    if ids.size > MAX_CANDIDATES:
        raise InvalidRequest(f"candidates: {ids.size} is more than the limit of {MAX_CANDIDATES}", "candidates")
    if ids.dtype.kind not in "iu":
        raise InvalidRequest(f"candidates: expected integers, got {ids.dtype}", "candidates")
    ids = ids.astype(np.int64, copy=False)
    # A set is the cheapest duplicate check for a Python list (~5 us for 100 ids); a sort for arrays.
    if isinstance(candidates, list):
        has_dup = len(set(candidates)) != ids.size
    else:
        ordered = np.sort(ids)
        has_dup = bool((ordered[1:] == ordered[:-1]).any())
    if has_dup:
        ordered = np.sort(ids)
        dup = int(ordered[1:][ordered[1:] == ordered[:-1]][0])
        raise InvalidRequest(f"candidates: duplicate id {dup}", "candidates")
    return ids


def _k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidRequest(f"k: expected an integer >= 1, got {k!r}", "k")
    return min(int(k), _INT32_MAX)


def _query(query: str | bytes) -> bytes:
    """Text is encoded as UTF-8 here; bytes are sent as they are (the server validates them)."""
    if isinstance(query, str):
        try:
            raw = query.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InvalidRequest(f"query: cannot be encoded as UTF-8 ({err.reason})", "query") from None
        if not query.strip():
            raise InvalidRequest("query: empty; use recommend() for requests without a query", "query")
    elif isinstance(query, (bytes, bytearray)):
        raw = bytes(query)
        if not raw.strip():
            raise InvalidRequest("query: empty; use recommend() for requests without a query", "query")
    else:
        raise InvalidRequest(f"query: expected str or bytes, got {type(query).__name__}", "query")
    if len(raw) > MAX_QUERY_BYTES:
        raise InvalidRequest(f"query: {len(raw)} bytes is longer than the limit of {MAX_QUERY_BYTES}", "query")
    return raw


def _tensor(name: str, array: npt.NDArray[Any], datatype: str) -> InferInput:
    inp = InferInput(name, list(array.shape), datatype)
    inp.set_data_from_numpy(array)
    return inp


def build_inputs(
    user_id: int | str, candidates: Sequence[int | str], k: int, query: str | bytes | None = None
) -> tuple[str, list[InferInput], dict[int, str] | None]:
    """Validate a request and build its tensors; returns ``(model, inputs, keys)``. Raises InvalidRequest.

    Ids may be integers or strings (a shop built with string ids); ``keys`` maps the sent INT64 ids
    back to the caller's strings (None for integer candidates), for ``parse_items``.
    """
    user = _user(user_id)
    keys = None
    if isinstance(candidates, (list, tuple)) and candidates and isinstance(candidates[0], str):
        if len(candidates) > MAX_CANDIDATES:
            raise InvalidRequest(
                f"candidates: {len(candidates)} is more than the limit of {MAX_CANDIDATES}", "candidates"
            )
        ids, keys = _string_candidates(candidates)
    else:
        ids = _candidates(candidates)
    top = _k(k)
    inputs = [_tensor("USER_ID", np.array([user], np.int64), "INT64")]
    if query is not None:
        inputs.append(_tensor("QUERY", np.array([_query(query)], dtype=np.object_), "BYTES"))
    inputs.append(_tensor("ITEM_IDS", ids, "INT64"))
    inputs.append(_tensor("TOP_K", np.array([top], np.int32), "INT32"))
    return (SEARCH_MODEL if query is not None else RECOMMEND_MODEL), inputs, keys


def _id_list(name: str, ids: Sequence[int | str] | npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int64]:
    """An exclusion or context list: integers, or strings sent as their stable INT64 ids; may be empty."""
    if isinstance(ids, (str, bytes)):
        raise InvalidRequest(f"{name}: expected a list of ids, got a single {type(ids).__name__}", name)
    if isinstance(ids, (list, tuple)) and ids and all(isinstance(i, str) for i in ids):
        values = np.fromiter((stable_id(i) for i in ids), np.int64, len(ids))
    else:
        try:
            values = np.asarray(ids)
        except (TypeError, ValueError) as err:
            raise InvalidRequest(f"{name}: not a list of ids ({err})", name) from None
        if values.size == 0:
            return np.zeros(0, np.int64)
        if values.ndim != 1:
            raise InvalidRequest(f"{name}: expected a flat list, got shape {list(values.shape)}", name)
        if values.dtype.kind not in "iu":
            raise InvalidRequest(f"{name}: expected integers (or all strings), got {values.dtype}", name)
        values = values.astype(np.int64, copy=False)
    if values.size > MAX_ID_LIST:
        raise InvalidRequest(f"{name}: {values.size} ids is more than the limit of {MAX_ID_LIST}", name)
    return values


def build_catalog_inputs(
    user_id: int | str,
    k: int,
    query: str | bytes | None = None,
    context: Sequence[int | str] = (),
    exclude: Sequence[int | str] = (),
) -> tuple[str, list[InferInput]]:
    """A request to retrieve from the whole catalogue: ``search_catalog`` with a query, else
    ``recommend_catalog`` (``context``: the items the user is viewing). Raises InvalidRequest."""
    inputs = [_tensor("USER_ID", np.array([_user(user_id)], np.int64), "INT64")]
    if query is not None:
        inputs.append(_tensor("QUERY", np.array([_query(query)], dtype=np.object_), "BYTES"))
    else:
        inputs.append(_tensor("CONTEXT_ITEM_IDS", _id_list("context", context), "INT64"))
    inputs.append(_tensor("EXCLUDE_IDS", _id_list("exclude", exclude), "INT64"))
    inputs.append(_tensor("TOP_K", np.array([_k(k)], np.int32), "INT32"))
    return (SEARCH_CATALOG_MODEL if query is not None else RECOMMEND_CATALOG_MODEL), inputs


def parse_items(
    ids: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    keys: dict[int, str] | None = None,
    served_keys: npt.NDArray[np.object_] | None = None,
) -> tuple[RankedItem, ...]:
    """The ranked items; with ``keys`` (string candidates) each id is the caller's string again. Otherwise,
    with the server's ``TOP_ITEM_KEYS`` (``served_keys``), an item whose key is not its INT64 id in decimal
    is a string-id shop's item: its id is that string (its SKU)."""
    id_list: list[Any] = ids.tolist()
    if keys is not None:
        id_list = [keys[i] for i in id_list]
    elif served_keys is not None and len(served_keys) == len(id_list):
        texts = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in served_keys.tolist()]
        id_list = [i if t == str(i) else t for i, t in zip(id_list, texts, strict=True)]
    return tuple(map(RankedItem._make, zip(id_list, scores.tolist())))


def check_metadata(model: str, metadata: dict[str, Any], endpoint: str) -> None:
    """Raise ContractMismatch listing every difference between served metadata and CONTRACT."""
    expected = CONTRACT[model]
    problems = []
    for kind in ("inputs", "outputs"):
        served = {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in metadata.get(kind, [])}
        for name, (dtype, shape) in expected[kind].items():
            if name not in served:
                problems.append(f"{kind[:-1]} {name} is missing")
            elif served[name] != (dtype, shape):
                problems.append(
                    f"{kind[:-1]} {name} is {served[name][0]}{served[name][1]}, the SDK uses {dtype}{shape}"
                )
        optional = OPTIONAL_OUTPUTS if kind == "outputs" else {}
        for name in sorted(set(served) - set(expected[kind])):
            if name not in optional:
                problems.append(f"{kind[:-1]} {name} is served but unknown to the SDK")
            elif served[name] != optional[name]:
                problems.append(
                    f"{kind[:-1]} {name} is {served[name][0]}{served[name][1]}, the SDK uses "
                    f"{optional[name][0]}{optional[name][1]}"
                )
    if problems:
        raise ContractMismatch(f"model '{model}' does not match this SDK: " + "; ".join(problems), endpoint=endpoint)


def listing_fields(result: Any) -> dict[str, Any]:
    """``RankingResult``'s group, match and facet fields from a response (``InferResult``; empty when the
    release answers none of the listing outputs)."""
    info = parse_info(result.as_numpy("RESULT_INFO"))
    groups = result.as_numpy("TOP_GROUP_KEYS")
    matched = result.as_numpy("TOP_GROUP_MATCHES")
    return {
        "groups": ()
        if groups is None
        else tuple(g.decode("utf-8") if isinstance(g, bytes) else str(g) for g in groups),
        "group_matches": () if matched is None else tuple(int(m) for m in matched),
        "matches": info.get("matches"),
        "facets": parse_facets(info),
        "info": info,
        "release": int(info["release"]) if isinstance(info.get("release"), int) else None,
    }
