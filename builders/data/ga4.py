"""Google Analytics 4's BigQuery export as the contract's events table (``data.events_format: ga4``).

The export has one table a day, ``events_YYYYMMDD``, one row an event, extracted as Parquet or as
newline-delimited JSON (BigQuery writes INT64 as text there; both are read). Its columns used here:
``event_timestamp`` (microseconds, UTC), ``event_name``, ``event_params`` (``ga_session_id``,
``search_term``, ``item_list_name``, ``item_list_id``), ``user_id``, ``user_pseudo_id`` and ``items``
(``item_id``, ``item_list_name``, ``item_list_id``, ``item_list_index``). The mapping:

* a **list** is one ``view_item_list`` or ``view_search_results`` event: its items are impressions at
  their ``item_list_index`` (null where the site sends none; ``data.position_base: auto`` decides whether
  it counts from 0 or 1);
* its **query** is the event's ``search_term``, or, for a list named in ``ga4.search_lists``, the session's
  latest ``search_term`` before it; other lists are homepage or browse lists;
* a list named in ``ga4.product_page_lists`` is shown on a **product page**: its context item is the
  session's latest ``view_item`` before it;
* ``select_item`` and ``view_item`` are **clicks**, ``add_to_cart`` and ``purchase`` what they say; each is
  credited to the latest impression of the same item in the same session, with its list and position. A
  ``select_item`` no logged list showed is a click in a list of its own (the contract counts it as
  shown); a ``view_item``, ``add_to_cart`` or ``purchase`` that no logged list showed is not an event of
  any list: it is dropped and counted (a product page reached from outside the shop's lists);
* the **session** is ``user_pseudo_id`` + ``ga_session_id`` (an id unique per device only); the **user** is
  ``user_id`` (signed-in shoppers; the rest anonymous), or ``user_pseudo_id`` with ``ga4.user``.

What GA4 cannot give is in docs/data.md: impressions only where the site sends list events with items,
no catalogue (price, stock, titles: use the shop's items file or a Merchant Center feed), and no event
of a visitor who refused consent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from builders.data.report import ValidationReport

logger = logging.getLogger(__name__)

SUFFIXES = (".parquet", ".pq", ".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
LIST_EVENTS = ("view_item_list", "view_search_results")
INTERACTIONS = {"select_item": "click", "view_item": "click", "add_to_cart": "add_to_cart", "purchase": "purchase"}
READ = ("event_timestamp", "event_name", "event_params", "user_id", "user_pseudo_id", "items")
NONE = np.iinfo(np.int64).min
NULL = np.array(None, object)  # a null text in np.where


@dataclass
class Ga4Events:
    """The export mapped onto the contract (``table``), the files read and what the mapping did (``said``)."""

    table: pa.Table
    files: list[Path]
    said: dict


def files(folder: Path, stem: str) -> list[Path]:
    """The export's daily files ``{stem}*`` (``events_YYYYMMDD.parquet`` ...); intraday tables only for days
    without a daily one (the daily table replaces them)."""
    found = sorted(p for p in folder.glob(f"{stem}*") if p.is_file() and p.name.endswith(SUFFIXES))
    daily = {p.name.split("_")[-1].split(".")[0] for p in found if "intraday" not in p.name}
    return [p for p in found if "intraday" not in p.name or p.name.split("_")[-1].split(".")[0] not in daily]


def _read_one(path: Path) -> pa.Table:
    if path.name.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    else:
        import pyarrow.json as pj

        table = pj.read_json(path)
    missing = [c for c in READ if c not in table.column_names]
    if missing:
        raise ValueError(f"not a GA4 export table: no column {', '.join(missing)}")
    return table.select(list(READ))


def _int(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """INT64 (or its text, as BigQuery's JSON writes it) as int64, ``NONE`` where null or not a number."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = pc.cast(pc.if_else(pc.match_substring_regex(arr, r"^\s*-?\d+\s*$"), arr, None), pa.int64())
    elif pa.types.is_floating(arr.type):
        arr = pc.cast(pc.floor(arr), pa.int64())
    elif not pa.types.is_integer(arr.type):
        arr = pa.nulls(len(arr), pa.int64())
    return pc.fill_null(pc.cast(arr, pa.int64()), NONE).to_numpy(zero_copy_only=False).astype(np.int64)


def _text(arr) -> np.ndarray:
    """Object array of str or None (numbers as their text)."""
    if arr.type == pa.null():
        return np.full(len(arr), None, object)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    return np.asarray(arr.to_numpy(zero_copy_only=False), object)


def _param(params: pa.ChunkedArray, key: str, n: int, text: bool) -> np.ndarray:
    """One event parameter per row (``string_value`` or ``int_value``, whichever the row has)."""
    flat = pc.list_flatten(params)
    parent = pc.list_parent_indices(params).to_numpy(zero_copy_only=False)
    keys = _text(pc.struct_field(flat, "key"))
    value = pc.struct_field(flat, "value")
    names = [value.type.field(i).name for i in range(value.type.num_fields)]
    string = _text(pc.struct_field(value, "string_value")) if "string_value" in names else None
    integer = _int(pc.struct_field(value, "int_value")) if "int_value" in names else None
    mine = np.flatnonzero(keys == key)[::-1]  # reversed: the first occurrence is written last and wins
    if text:
        out = np.full(n, None, object)
        vals = string[mine] if string is not None else np.full(len(mine), None, object)
        if integer is not None:
            ints = integer[mine]
            vals = np.where((vals == None) & (ints != NONE), ints.astype(str), vals)  # noqa: E711
        out[parent[mine]] = vals
        return out
    out = np.full(n, NONE, np.int64)
    vals = integer[mine] if integer is not None else np.full(len(mine), NONE, np.int64)
    if string is not None:
        digits = np.array([v is not None and v.strip().lstrip("-").isdigit() for v in string[mine]], bool)
        from_text = np.array([int(v) if d else NONE for v, d in zip(string[mine], digits, strict=True)], np.int64)
        vals = np.where(vals == NONE, from_text, vals)
    out[parent[mine]] = vals
    return out


def _items(items: pa.ChunkedArray) -> dict[str, np.ndarray]:
    flat = pc.list_flatten(items)
    fields = {flat.type.field(i).name for i in range(flat.type.num_fields)} if len(flat) else set()

    def field(name: str) -> np.ndarray:
        return _text(pc.struct_field(flat, name)) if name in fields else np.full(len(flat), None, object)

    index = _int(pc.struct_field(flat, "item_list_index")) if "item_list_index" in fields else np.full(len(flat), NONE)
    return {
        "event": pc.list_parent_indices(items).to_numpy(zero_copy_only=False).astype(np.int64),
        "item_id": field("item_id"),
        "list_name": field("item_list_name"),
        "list_id": field("item_list_id"),
        "index": index,
    }


def _latest(keys: np.ndarray, times: np.ndarray, q_keys: np.ndarray, q_times: np.ndarray) -> np.ndarray:
    """For each query (key, time): the index of the latest row with the same key at or before that time, or -1."""
    if not len(keys) or not len(q_keys):
        return np.full(len(q_keys), -1, np.int64)
    t0, span = int(min(times.min(), q_times.min())), int(max(times.max(), q_times.max()))
    width = span - t0 + 1
    combined = keys.astype(np.int64) * width + (times - t0)
    order = np.argsort(combined, kind="stable")
    at = np.searchsorted(combined[order], q_keys.astype(np.int64) * width + (q_times - t0), side="right") - 1
    found = (at >= 0) & (keys[order][np.maximum(at, 0)] == q_keys)
    return np.where(found, order[np.maximum(at, 0)], -1)


def read(folder: Path, stem: str, settings, rep: ValidationReport) -> Ga4Events | None:
    """The GA4 export in ``folder`` (files ``{stem}*``) as the contract's events table, or None (reported)."""
    paths = files(folder, stem)
    if not paths:
        rep.error(
            f"{stem}*",
            None,
            f"no GA4 export in {folder} (data.events_format: ga4 looks for {stem}*.parquet or {stem}*.json: the "
            f"events_YYYYMMDD tables, extracted from BigQuery)",
        )
        return None
    tables = []
    for path in paths:
        try:
            tables.append(_normalised(_read_one(path)))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError, KeyError) as err:
            rep.error(path.name, None, f"cannot be read as a GA4 export table: {err}")
    if len(tables) < len(paths):
        return None
    raw = pa.concat_tables(tables)
    label = f"{paths[0].name}{f' (+{len(paths) - 1} more)' if len(paths) > 1 else ''}"
    return _map(raw, paths, label, settings, rep)


ITEM = pa.struct(
    [
        ("item_id", pa.string()),
        ("item_list_name", pa.string()),
        ("item_list_id", pa.string()),
        ("item_list_index", pa.int64()),
    ]
)


def _normalised(raw: pa.Table) -> pa.Table:
    """The columns used, in one schema whatever the file's (Parquet's INT64 or JSON's INT64-as-text): one row an
    event, its parameters as columns, its items' used fields."""
    n = raw.num_rows
    params = raw.column("event_params").combine_chunks()
    items = raw.column("items").combine_chunks()
    if items.type == pa.null():
        items = pa.array([[]] * n, pa.list_(pa.struct([("item_id", pa.string())])))
    it = _items(items)
    offsets = np.zeros(n + 1, np.int32)
    np.add.at(offsets, it["event"] + 1, 1)
    struct = pa.StructArray.from_arrays(
        [
            pa.array(it["item_id"], pa.string()),
            pa.array(it["list_name"], pa.string()),
            pa.array(it["list_id"], pa.string()),
            pa.array(it["index"], pa.int64(), mask=it["index"] == NONE),
        ],
        fields=list(ITEM),
    )
    has_params = params.type != pa.null()
    return pa.table(
        {
            "event_timestamp": pa.array(_int(raw.column("event_timestamp")), pa.int64()),
            "event_name": pa.array(_text(raw.column("event_name")), pa.string()),
            "user_id": pa.array(_text(raw.column("user_id")), pa.string()),
            "user_pseudo_id": pa.array(_text(raw.column("user_pseudo_id")), pa.string()),
            "ga_session_id": pa.array(
                _param(params, "ga_session_id", n, text=False) if has_params else np.full(n, NONE), pa.int64()
            ),
            **{
                key: pa.array(_param(params, key, n, text=True) if has_params else [None] * n, pa.string())
                for key in ("search_term", "item_list_name", "item_list_id")
            },
            "items": pa.ListArray.from_arrays(pa.array(np.cumsum(offsets), pa.int32()), struct),
        }
    )


def _map(raw: pa.Table, paths: list[Path], label: str, settings, rep: ValidationReport) -> Ga4Events:
    n = raw.num_rows
    name = _text(raw.column("event_name"))
    micros = _int(raw.column("event_timestamp"))
    bad_time = micros == NONE
    if bad_time.any():
        rep.error(label, "event_timestamp", "null or not a number (microseconds since 1970, UTC)", bad_time)
    seconds = np.where(bad_time, 0, micros // 1_000_000)
    ga_session = raw.column("ga_session_id").to_numpy(zero_copy_only=False).astype(np.int64)
    search_term = _text(raw.column("search_term"))
    event_list_name = _text(raw.column("item_list_name"))
    event_list_id = _text(raw.column("item_list_id"))
    pseudo = _text(raw.column("user_pseudo_id"))
    user = _text(raw.column(settings.user))
    cookieless = np.array([p is None for p in pseudo])
    no_session = (ga_session == NONE) & ~cookieless
    # user_pseudo_id:ga_session_id, or user_pseudo_id:day<n> without a ga_session_id
    part = np.where(ga_session == NONE, seconds // 86_400, ga_session).astype(str).astype(object)
    part = np.where(ga_session == NONE, "day" + part, part)
    session = np.asarray(
        pc.binary_join_element_wise(pa.array(pseudo, pa.string()), pa.array(part, pa.string()), ":").to_numpy(
            zero_copy_only=False
        ),
        object,
    )
    # a list's query: its own search_term, or (a search list) the session's latest search term before it
    has_term = np.array([t is not None and t.strip() != "" for t in search_term])
    term_rows = np.flatnonzero(has_term & ~cookieless)
    s_code, sessions = _codes(session)

    it = _items(raw.column("items").combine_chunks())
    ev = it["event"]
    i_name = name[ev]
    list_name = np.where(it["list_name"] != None, it["list_name"], event_list_name[ev])  # noqa: E711
    list_id = np.where(it["list_id"] != None, it["list_id"], event_list_id[ev])  # noqa: E711
    known_item = np.array([i is not None and i != "" for i in it["item_id"]])
    live = known_item & ~cookieless[ev] & ~bad_time[ev]
    search_lists, page_lists = set(settings.search_lists), set(settings.product_page_lists)

    def named(names: set[str]) -> np.ndarray:
        return np.array([a in names or b in names for a, b in zip(list_name, list_id, strict=True)], bool)

    is_list = np.isin(i_name, LIST_EVENTS) & live
    is_select = (i_name == "select_item") & live
    query = search_term[ev].copy()
    wants_term = (is_list | is_select) & ~has_term[ev] & ((i_name == "view_search_results") | named(search_lists))
    latest = _latest(s_code[term_rows], seconds[term_rows], s_code[ev], seconds[ev])
    latest_term = _take(search_term[term_rows], latest)
    query = np.where(wants_term, latest_term, np.where(has_term[ev], query, NULL))
    # a product page's list: the session's latest view_item before it is the page's item
    views = np.flatnonzero((i_name == "view_item") & live)
    page = _latest(s_code[ev[views]], seconds[ev[views]], s_code[ev], seconds[ev])
    on_page = (is_list | is_select) & named(page_lists) & (page >= 0)
    context = np.where(on_page, _take(it["item_id"][views], page), NULL)

    # interactions credited to the latest impression of the same item in the same session
    imp = np.flatnonzero(is_list)
    pair_key = _pair_codes(s_code[ev], it["item_id"])
    acts = np.flatnonzero(np.isin(i_name, list(INTERACTIONS)) & live)
    credit = _latest(pair_key[imp], seconds[ev[imp]], pair_key[acts], seconds[ev[acts]])
    credited = credit >= 0
    own = ~credited & (i_name[acts] == "select_item")  # a click no logged list showed: a list of its own
    row = np.concatenate([imp, acts[credited | own]])  # the item row each output event is
    credited_row = imp[credit[credited]] if credited.any() else np.zeros(0, np.int64)
    act_src = acts.copy()
    act_src[credited] = credited_row
    src = np.concatenate([imp, act_src[credited | own]])
    kind = np.concatenate(
        [np.full(len(imp), "impression", object), np.array([INTERACTIONS[k] for k in i_name[acts]], object)]
    )[np.concatenate([np.ones(len(imp), bool), credited | own])]
    gone = acts[~(credited | own)]
    dropped = {str(k): int(v) for k, v in zip(*np.unique(i_name[gone].astype(str), return_counts=True), strict=True)}
    order = np.lexsort((row, seconds[ev[row]]))
    row, src, kind = row[order], src[order], kind[order]
    position = it["index"][src]
    table = pa.table(
        {
            "timestamp": pa.array(seconds[ev[row]], pa.int64()),
            "session_id": pa.array(sessions[s_code[ev[row]]].tolist(), pa.string()),
            "user_id": pa.array(user[ev[row]].tolist(), pa.string()),
            "query": pa.array(query[src].tolist(), pa.string()),
            "item_id": pa.array(it["item_id"][row].tolist(), pa.string()),
            "context_item_id": pa.array(context[src].tolist(), pa.string()),
            "position": pa.array(position, pa.int64(), mask=position == NONE),
            "event": pa.array(kind.tolist(), pa.string()),
        }
    )
    counts = {k: int((name == k).sum()) for k in (*LIST_EVENTS, *INTERACTIONS)}
    said = {
        "files": len(paths),
        "rows": n,
        "events": counts,
        "impressions": int(is_list.sum()),
        "impressions_without_index": int((is_list & (it["index"] == NONE)).sum()),
        "search_list_events": int(len(np.unique(ev[imp][query[imp] != None]))),  # noqa: E711
        "product_page_list_events": int(len(np.unique(ev[imp][context[imp] != None]))),  # noqa: E711
        "dropped_not_from_a_logged_list": dropped,
        "cookieless_events": int(cookieless.sum()),
    }
    if cookieless.any():
        rep.warning(
            label,
            "user_pseudo_id",
            f"{int(cookieless.sum())} events have no user_pseudo_id (consent mode's cookieless pings): no session; "
            f"dropped",
            cookieless,
        )
    if no_session.any():
        rep.warning(
            label,
            "event_params.ga_session_id",
            f"{int(no_session.sum())} events have no ga_session_id: their device's day is their session",
            no_session,
        )
    if dropped:
        rep.warning(
            label,
            "items",
            "events of items no logged list showed before, in the same session, are not part of any list: "
            + ", ".join(f"{v} {k}" for k, v in sorted(dropped.items()))
            + " dropped (impressions come only from view_item_list / view_search_results events with items)",
        )
    if not is_list.any():
        rep.error(
            label,
            "event_name",
            "no view_item_list or view_search_results event with items: GA4 logs the lists shoppers saw only "
            "where the site sends them (gtag's view_item_list with items[]); without them there is nothing to "
            "rank or learn from",
        )
    logger.info(
        f"  GA4: {n:,} export rows in {len(paths)} files -> {table.num_rows:,} events "
        f"({said['impressions']:,} impressions, {said['search_list_events']:,} search list events, "
        f"{said['product_page_list_events']:,} product-page list events)"
    )
    return Ga4Events(table, paths, said)


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]``, None where ``index`` is -1."""
    out = np.full(len(index), None, object)
    found = index >= 0
    out[found] = values[index[found]]
    return out


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, distinct values)`` of a text array (hashed, in order of first appearance; null as one value)."""
    encoded = pa.array(values, pa.string()).dictionary_encode(null_encoding="encode")
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), object)


def _pair_codes(session: np.ndarray, item: np.ndarray) -> np.ndarray:
    """One int64 per (session code, item) pair."""
    item_code, items = _codes(item)
    return session * max(len(items), 1) + item_code
