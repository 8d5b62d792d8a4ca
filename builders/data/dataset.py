"""``ShopData``: a shop's validated data in the arrays the features and the ranker read.

``load_shop(cfg)`` reads the contract files, validates them (``builders.data.load`` for the
columns, this module for the rules across rows and files), and groups the events into *ranked
lists*: the items one session was shown for one query (or for the homepage, query null). A list
is the unit the ranker learns from and NDCG is computed on (``session_*`` arrays below, one entry
per list; the name is kept from the training code's point of view). A product page's list (the
events' optional ``context_item_id``: the item being viewed) is a list of its own, and the lists of
one ``session_id`` share a ``session_group``, so a session's sequence of lists can be followed.

Labels per (list, item): ``click`` if it was clicked or added to the cart, ``purchase`` if bought
(a purchase counts as a click). Items clicked without a logged impression are kept as shown.
Items are ordered in a list by position, then by their first event's time.

Over 400 lines on purpose: ``load_shop`` reads the contract's three files in one order (items, users,
events, then the lists and the time cuts), and each check it makes must run before the next read; its helpers
stay beside it so that order is read top to bottom.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from builders.data import load as L
from builders.data.config import ShopConfig
from builders.data.contract import CONTRACT_VERSION, EVENT_KINDS, MAX_ATTRIBUTES, MIN_EVAL_CLICKS, MIN_TRAIN_CLICKS
from builders.data.report import DataError, ValidationReport, sample
from runtime.tables import lookup_rows

CLICK, CART, PURCHASE = EVENT_KINDS.index("click"), EVENT_KINDS.index("add_to_cart"), EVENT_KINDS.index("purchase")
DAY = 86_400


@dataclass
class ShopData:
    """Everything the build learns from. Item/user arrays are indexed by row; -1 = unknown/anonymous."""

    name: str
    id_kinds: dict  # {"item": "int64"|"string", "user": ...}
    # catalogue [I]
    item_ids: np.ndarray  # int64, served ids (stable hashes of string SKUs)
    item_keys: list | None  # the original string SKUs, or None
    item_titles: list[str]
    item_category: np.ndarray  # int64 index into categories, -1 = none
    item_brand: np.ndarray  # int64 index into brands, -1 = none
    item_attrs: np.ndarray  # [I, A] int64 indices into attributes, -1 padding
    item_price: np.ndarray  # float32
    item_stock: np.ndarray  # int64
    categories: list[str]
    brands: list[str]
    attributes: list[str]
    # users [U]
    user_ids: np.ndarray  # int64
    user_segment: np.ndarray  # int64 index into segments, -1 = none
    segments: list[str]
    # ranked lists [S] ("sessions" for the training code) and their impressions [N]
    queries: list[str]  # distinct query texts
    session_user: np.ndarray  # int64 user row, -1 = anonymous or unknown
    session_time: np.ndarray  # int64 unix seconds of the list's first event, ascending
    session_query: np.ndarray  # int64 index into queries, -1 = homepage / browse
    session_offsets: np.ndarray  # [S+1]
    imp_item: np.ndarray  # int64 item row, -1 = an item the catalogue does not have (cold)
    imp_position: np.ndarray  # int64, -1 = unknown
    imp_click: np.ndarray  # int8
    imp_purchase: np.ndarray  # int8
    imp_relevance: np.ndarray | None = None  # float32 true relevance: generated shops only
    # [S] int64 item row the list was shown beside (a product page's recommendations), -1 = none (search,
    # homepage) or an item the catalogue does not have
    session_context: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    session_group: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [S] the list's session_id, coded
    cuts: dict = field(default_factory=dict)  # unix seconds: stats, train, validation
    # [I] int64 index into groups (the items' item_group_id), -1 = none; groups empty when the shop has none
    item_group: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    groups: list[str] = field(default_factory=list)
    item_created: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [I] unix seconds, -1 unknown
    # every attribute of each item (item_attrs keeps MAX_ATTRIBUTES for the features): CSR into attributes
    item_attr_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    item_attr_values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_impressions(self) -> int:
        return int(self.imp_item.shape[0])

    def impression_session(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.session_user)), np.diff(self.session_offsets))

    _TEXT = (
        "name",
        "id_kinds",
        "item_keys",
        "item_titles",
        "categories",
        "brands",
        "attributes",
        "segments",
        "queries",
        "cuts",
        "groups",
    )

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        np.savez(folder / "shop.npz", **arrays)
        (folder / "shop_text.json").write_text(json.dumps({k: getattr(self, k) for k in self._TEXT}))

    @classmethod
    def load(cls, folder: Path) -> ShopData:
        with np.load(folder / "shop.npz") as data:
            arrays = {k: data[k] for k in data.files}
        texts = json.loads((folder / "shop_text.json").read_text())
        return cls(**texts, **arrays)


def rows_of_lists(offsets: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """Flat row indices of the lists ``lists`` (``offsets[i]:offsets[i+1]`` is list i), in list order."""
    starts, ends = offsets[lists], offsets[lists + 1]
    lengths = ends - starts
    return (
        np.repeat(starts - np.cumsum(np.concatenate([[0], lengths[:-1]])), lengths) + np.arange(lengths.sum())
    ).astype(np.int64)


def impressions_of(shop, sessions: np.ndarray) -> np.ndarray:
    """Flat impression indices of the given lists, in list order."""
    return rows_of_lists(shop.session_offsets, sessions)


def split_by_time(shop: ShopData) -> dict[str, np.ndarray]:
    """List indices of stats / train / val / test, by the config's time cuts (no list straddles one)."""
    t, c = shop.session_time, shop.cuts
    return {
        "stats": np.flatnonzero(t < c["stats"]),
        "train": np.flatnonzero((t >= c["stats"]) & (t < c["train"])),
        "val": np.flatnonzero((t >= c["train"]) & (t < c["validation"])),
        "test": np.flatnonzero(t >= c["validation"]),
    }


def newest_window(shop: ShopData, length: str = "stats") -> np.ndarray:
    """The lists of the newest window before the held-out days: as long as the statistics window
    (``length="stats"``), or everything before the validation cut (``"all"``)."""
    t, c = shop.session_time, shop.cuts
    start = c["validation"] - (c["stats"] - int(t.min())) if length == "stats" else int(t.min())
    return np.flatnonzero((t >= start) & (t < c["validation"]))


def day(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M")


def _codes(values) -> tuple[np.ndarray, list]:
    """Integer codes of hashable values in first-seen order (None -> -1), and the distinct values."""
    lookup: dict = {}
    codes = np.fromiter(
        (lookup.setdefault(v, len(lookup)) if v is not None else -1 for v in values), np.int64, len(values)
    )
    return codes, list(lookup)


def _vocabulary(values) -> tuple[np.ndarray, list[str]]:
    """Indices into the sorted distinct non-null values (-1 for null)."""
    vocab = sorted({v for v in values if v is not None})
    index = {v: i for i, v in enumerate(vocab)}
    return np.array([index[v] if v is not None else -1 for v in values], np.int64), vocab


def _duplicate_rows(columns: list[np.ndarray]) -> np.ndarray:
    """Mask of rows equal in every column to an earlier row."""
    n = len(columns[0])
    if n == 0:
        return np.zeros(0, bool)
    order = np.lexsort(columns[::-1])
    same = np.ones(n - 1, bool)
    for col in columns:
        s = col[order]
        same &= s[1:] == s[:-1]
    dup = np.zeros(n, bool)
    dup[order[1:][same]] = True
    return dup


def _dedupe(
    ids: L.Ids, content: list[np.ndarray], file: str, label: str, what: str, rep: ValidationReport
) -> np.ndarray:
    """Rows to keep: identical rows are dropped (a warning); one id with two different rows, or two
    string ids hashing to the same INT64, is an error."""
    dup = _duplicate_rows([ids.values, *content])
    if dup.any():
        rep.warning(file, None, "exact duplicate rows; dropped", dup)
    keep = ~dup
    uniq, counts = np.unique(ids.values[keep], return_counts=True)
    clash = np.isin(ids.values, uniq[counts > 1]) & keep
    if clash.any():
        shown = ids.keys if ids.keys is not None else ids.values
        rep.error(
            file,
            label,
            f"duplicate {what} ids with different rows: {sample(shown, clash)}; each {what} must appear once",
            clash,
        )
    if ids.keys is not None:
        pairs: dict = {}
        for v, k in zip(ids.values[~ids.null].tolist(), ids.keys[~ids.null].tolist(), strict=True):
            if pairs.setdefault(v, k) != k:
                rep.error(file, label, f"ids {pairs[v]!r} and {k!r} hash to the same INT64 id {v}; rename one")
    return keep


def _rows(table_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of each id in ``table_ids`` (-1 where absent), with the serving code's lookup."""
    order = np.argsort(table_ids, kind="stable")
    return lookup_rows(table_ids[order], order.astype(np.int64), ids)


def _items(loaded: L.Loaded, rep: ValidationReport) -> dict:
    f, cols, n = loaded.path.name, loaded.columns, loaded.rows
    lab = loaded.labels.__getitem__  # every contract column has its label, read or not
    L.check_nulls(loaded, rep)
    if rep.errors:
        return {}
    ids: L.Ids = cols["item_id"]
    titles = cols["title"]
    blank = np.array([t is not None and not t.strip() for t in titles])
    if blank.any():
        rep.error(f, lab("title"), "empty title: every item needs a title to be encoded", blank)
    price, stock = cols["price"], cols["stock"]
    if (price <= 0).any():
        rep.error(f, lab("price"), f"must be > 0, got {sample(price, price <= 0)}", price <= 0)
    if (stock < 0).any():
        rep.error(f, lab("stock"), f"must be >= 0, got {sample(stock, stock < 0)}", stock < 0)
    attrs = cols.get("attributes") or [[] for _ in range(n)]
    category = np.array([c.strip() if c is not None and c.strip() else None for c in cols["category"]], object)
    brand = np.array([b.strip() if b is not None and b.strip() else None for b in cols["brand"]], object)
    content = [_codes(v)[0] for v in (titles, category, brand, [";".join(a) for a in attrs])] + [price, stock]
    keep = _dedupe(ids, content, f, lab("item_id"), "item", rep)
    if rep.errors:
        return {}
    rows = np.flatnonzero(keep)
    cat_idx, categories = _vocabulary(category[rows])
    brand_idx, brands = _vocabulary(brand[rows])
    kept_attrs = [attrs[i] for i in rows]
    too_many = np.array([len(a) > MAX_ATTRIBUTES for a in kept_attrs])
    if too_many.any():
        rep.warning(
            f,
            lab("attributes"),
            f"more than {MAX_ATTRIBUTES} attributes; the first {MAX_ATTRIBUTES} are used",
            rows[too_many],
        )
    vocab = sorted({a for a_list in kept_attrs for a in a_list})
    aidx = {a: i for i, a in enumerate(vocab)}
    width = max(1, min(MAX_ATTRIBUTES, max((len(a) for a in kept_attrs), default=0)))
    attr_arr = np.full((len(rows), width), -1, np.int64)
    for r, a_list in enumerate(kept_attrs):
        for j, a in enumerate(a_list[:width]):
            attr_arr[r, j] = aidx[a]
    every = [sorted({aidx[a] for a in a_list}) for a_list in kept_attrs]
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in every])]).astype(np.int64)
    group_text = cols.get("item_group_id")
    if group_text is None:
        group_idx, groups = np.full(len(rows), -1, np.int64), list[str]()
    else:
        cleaned = np.array([g.strip() if g is not None and g.strip() else None for g in group_text[rows]], object)
        group_idx, groups = _vocabulary(cleaned)
    created = cols.get("created_at")
    missing = np.iinfo(np.int64).min
    created_at = (
        np.full(len(rows), -1, np.int64) if created is None else np.where(created[rows] == missing, -1, created[rows])
    )
    return dict(
        item_group=np.asarray(group_idx, np.int64),
        groups=groups,
        item_created=created_at.astype(np.int64),
        item_attr_offsets=offsets,
        item_attr_values=np.array([a for a_list in every for a in a_list], np.int64),
        item_ids=ids.values[rows],
        item_keys=None if ids.keys is None else list(ids.keys[rows]),
        item_titles=[titles[i].strip() for i in rows],
        item_category=cat_idx,
        item_brand=brand_idx,
        item_attrs=attr_arr,
        item_price=price[rows].astype(np.float32),
        item_stock=stock[rows].astype(np.int64),
        categories=categories,
        brands=brands,
        attributes=vocab,
        item_kind=ids.kind,
    )


def _users(loaded: L.Loaded | None, segment_column: str | None, rep: ValidationReport) -> dict:
    if loaded is None:
        if segment_column:
            rep.error("users", segment_column, "features.user_segment names a users column, but there is no users file")
        return dict(user_ids=np.zeros(0, np.int64), segment=np.zeros(0, object), user_kind=None)
    f = loaded.path.name
    L.check_nulls(loaded, rep)
    if "user_id" not in loaded.columns or rep.errors:
        return {}
    ids: L.Ids = loaded.columns["user_id"]
    segment = np.full(loaded.rows, None, object)
    if segment_column and segment_column in loaded.extra:
        raw = loaded.extra[segment_column].to_pylist()
        segment = np.array([None if v is None else str(v) for v in raw], object)
    keep = _dedupe(ids, [_codes(segment)[0]], f, loaded.labels["user_id"], "user", rep)
    return dict(user_ids=ids.values[keep], segment=segment[keep], user_kind=ids.kind)


def _time_cuts(times: np.ndarray, split) -> dict:
    t0, t1 = int(times.min()), int(times.max())
    cuts = {}
    for name in ("stats", "train", "validation"):
        cut = t0 + getattr(split, name) * (t1 - t0)
        if t1 - t0 >= 10 * DAY:  # whole days: "held-out days", not a cut in the middle of one
            cut = round(cut / DAY) * DAY
        cuts[name] = int(cut)
    return cuts


def _positions(
    raw: np.ndarray | None, n: int, base_setting, file: str, label: str | None, rep: ValidationReport
) -> tuple[np.ndarray, int | None]:
    """The events' positions counted from 0 (NaN where unknown), and the base they were counted from
    (``data.position_base``; ``auto``: 1 where no known position is 0, else 0; None: no known position)."""
    if raw is None or np.isnan(raw).all():
        return np.full(n, np.nan), None
    known = ~np.isnan(raw)
    if base_setting == "auto":
        base = 1 if raw[known].min() >= 1 else 0
        if base == 1:
            rep.warning(
                file,
                label,
                f"no position is 0 among {int(known.sum()):,} known positions: read as counted from 1 (1 = top), "
                f"as GA4's item index and many exports count (data.position_base: auto; set 0 or 1 to decide)",
            )
    else:
        base = int(base_setting)
    low = raw < base
    if low.any():
        rep.error(
            file,
            label,
            f"must be >= {base} ({base} = top, data.position_base: {base_setting}), got "
            + ", ".join(f"{v:g}" for v in np.unique(raw[low])[:3]),
            low,
        )
    return raw - base, base


def load_shop(cfg: ShopConfig) -> tuple[ShopData, ValidationReport]:
    """Read, validate and assemble the shop of ``cfg``. Raises DataError listing every problem."""
    rep = ValidationReport()
    d = cfg.data
    if not d.folder.is_dir():
        raise DataError(f"data.folder {d.folder} is not a folder")
    rel = cfg.evaluation.true_relevance
    items_l = L.load_table("items", d, rep)
    users_l = L.load_table("users", d, rep, extra=(cfg.features.user_segment,) if cfg.features.user_segment else ())
    events_l = L.load_table("events", d, rep, extra=(rel,) if rel else ())
    rep.raise_if_errors()
    assert items_l is not None and events_l is not None  # an unreadable items or events file is an error above
    items = _items(items_l, rep)
    users = _users(users_l, cfg.features.user_segment, rep)
    L.check_nulls(events_l, rep)
    rep.raise_if_errors()

    ev, ef = events_l.columns, events_l.path.name
    item_ev: L.Ids = ev["item_id"]
    ctx_ev: L.Ids | None = ev.get("context_item_id")
    user_ev: L.Ids = ev["user_id"]
    sess: L.Ids = ev["session_id"]
    if item_ev.kind != items["item_kind"]:
        rep.error(
            ef,
            "item_id",
            f"{item_ev.kind} ids, but {items_l.path.name} has {items['item_kind']} ids: both "
            f"files must use the same ids (for text ids read as numbers, set data.id_type: string)",
        )
    if ctx_ev is not None and not ctx_ev.null.all() and ctx_ev.kind != items["item_kind"]:
        rep.error(
            ef,
            events_l.labels["context_item_id"],
            f"{ctx_ev.kind} ids, but {items_l.path.name} has {items['item_kind']} ids: both files must use "
            f"the same ids",
        )
    if users["user_kind"] and not user_ev.null.all() and user_ev.kind != users["user_kind"]:
        rep.error(
            ef,
            "user_id",
            f"{user_ev.kind} ids, but {users_l.path.name if users_l else 'users'} has {users['user_kind']} ids; set "
            f"data.id_type: string if text ids were read as numbers",
        )
    rep.raise_if_errors()

    n = events_l.rows
    ts = ev["timestamp"]
    kind = ev["event"].astype(np.int64)
    pos, base = _positions(ev.get("position"), n, d.position_base, ef, events_l.labels.get("position"), rep)
    queries_raw = np.array([q.strip() if q is not None and q.strip() else None for q in ev["query"]], object)
    q_code, query_texts = _codes(queries_raw)
    if ctx_ev is not None:
        ctx_value = np.where(ctx_ev.null, np.iinfo(np.int64).min, ctx_ev.values)
    else:
        ctx_value = np.full(n, np.iinfo(np.int64).min, np.int64)
    relevance = None
    if rel:
        relevance = events_l.extra[rel].cast("float64").to_numpy(zero_copy_only=False)

    dup = _duplicate_rows(
        [
            ts,
            sess.values,
            user_ev.values,
            user_ev.null.astype(np.int64),
            q_code,
            ctx_value,
            item_ev.values,
            np.nan_to_num(pos, nan=-1),
            kind,
        ]
    )
    if dup.any():
        rep.warning(ef, None, "exact duplicate events; dropped", dup)
    item_row = _rows(items["item_ids"], item_ev.values)
    unknown = (item_row < 0) & ~dup
    if unknown.any():
        shown = item_ev.keys if item_ev.keys is not None else item_ev.values
        action = (
            "dropped (data.unknown_items: drop)"
            if d.unknown_items == "drop"
            else "kept as cold items, ranked with the unknown-item features (data.unknown_items: cold)"
        )
        rep.warning(
            ef,
            events_l.labels["item_id"],
            f"{int(unknown.sum())} events reference items not in {items_l.path.name} "
            f"(e.g. {sample(shown, unknown, 2)}): {action}",
            unknown,
        )
    keep = ~dup & ~(unknown & (d.unknown_items == "drop"))
    ctx_row = np.where(ctx_value == np.iinfo(np.int64).min, -1, _rows(items["item_ids"], ctx_value))
    unknown_ctx = (ctx_row < 0) & (ctx_value != np.iinfo(np.int64).min) & keep
    if unknown_ctx.any():
        rep.warning(
            ef,
            events_l.labels["context_item_id"],
            f"{int(unknown_ctx.sum())} events name a context item not in {items_l.path.name}: "
            f"their lists are kept without a context item",
            unknown_ctx,
        )

    # Out of order: a session's events must be in time order in the file; they are sorted here.
    s_code, _ = _codes(sess.values.tolist())
    order_in_file = np.lexsort((np.arange(n), s_code))
    same_session = s_code[order_in_file][1:] == s_code[order_in_file][:-1]
    back = same_session & (np.diff(ts[order_in_file]) < 0)
    if back.any():
        rows_back = order_in_file[1:][back]
        n_back = len(np.unique(s_code[rows_back]))
        rep.warning(
            ef,
            events_l.labels["timestamp"],
            f"{n_back} session{'s have' if n_back > 1 else ' has'} events "
            f"out of time order in the file; sorted by timestamp",
            rows_back,
        )

    # Users: the users file, plus every user seen in the events (they have history but no attributes).
    new_users = np.setdiff1d(user_ev.values[~user_ev.null & keep], users["user_ids"])
    segment = np.concatenate([users["segment"], np.full(len(new_users), None, object)])
    user_ids = np.concatenate([users["user_ids"], new_users])
    seg_idx, segments = _vocabulary(segment)

    # Ranked lists: (session, query, context item), in time order.
    rows = np.flatnonzero(keep)
    order = rows[np.lexsort((ts[rows], ctx_row[rows], q_code[rows], s_code[rows]))]
    key_s, key_q, key_c = s_code[order], q_code[order], ctx_row[order]
    boundary = np.concatenate(
        [[True], (key_s[1:] != key_s[:-1]) | (key_q[1:] != key_q[:-1]) | (key_c[1:] != key_c[:-1])]
    )
    starts = np.flatnonzero(boundary)
    list_of_row = np.cumsum(boundary) - 1
    list_time = ts[order][starts]
    list_query = key_q[starts]
    first_user = np.full(len(starts), -1, np.int64)
    has_user = ~user_ev.null[order]
    urow = _rows(user_ids, user_ev.values[order])
    # the first logged-in user of the list (reversed assignment: the earliest row wins)
    idx = np.flatnonzero(has_user)[::-1]
    first_user[list_of_row[idx]] = urow[idx]

    # (list, item) pairs: labels, position, first time
    item_key = item_ev.values[order]
    pair_keys = np.stack([list_of_row, item_key], 1)
    pairs, pair_of_row = np.unique(pair_keys, axis=0, return_inverse=True)
    pair_of_row = pair_of_row.reshape(-1)
    k = kind[order]
    n_pairs = len(pairs)
    click = np.zeros(n_pairs, np.int8)
    np.maximum.at(click, pair_of_row, np.isin(k, (CLICK, CART, PURCHASE)).astype(np.int8))
    purchase = np.zeros(n_pairs, np.int8)
    np.maximum.at(purchase, pair_of_row, (k == PURCHASE).astype(np.int8))
    p = pos[order]
    position = np.full(n_pairs, np.inf)
    np.minimum.at(position, pair_of_row, np.where(np.isnan(p), np.inf, p))
    first = np.full(n_pairs, np.iinfo(np.int64).max)
    np.minimum.at(first, pair_of_row, ts[order])
    pair_item_row = np.zeros(n_pairs, np.int64)
    pair_item_row[pair_of_row] = item_row[order]
    rel_pair = None
    if relevance is not None:
        rel_pair = np.full(n_pairs, -np.inf)
        r = relevance[order]
        np.maximum.at(rel_pair, pair_of_row, np.where(np.isnan(r), -np.inf, r))
        rel_pair = np.where(np.isfinite(rel_pair), rel_pair, 0.0).astype(np.float32)
    # lists in time order, items in a list by position, then first event
    list_order = np.argsort(list_time, kind="stable")
    rank_of_list = np.empty_like(list_order)
    rank_of_list[list_order] = np.arange(len(list_order))
    pair_order = np.lexsort((first, position, rank_of_list[pairs[:, 0]]))
    lengths = np.bincount(rank_of_list[pairs[:, 0]], minlength=len(starts))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    imp_pos = position[pair_order]

    data = ShopData(
        name=cfg.name,
        id_kinds={"item": items["item_kind"], "user": users["user_kind"] or user_ev.kind},
        item_ids=items["item_ids"],
        item_keys=items["item_keys"],
        item_titles=items["item_titles"],
        item_category=items["item_category"],
        item_brand=items["item_brand"],
        item_attrs=items["item_attrs"],
        item_price=items["item_price"],
        item_stock=items["item_stock"],
        categories=items["categories"],
        brands=items["brands"],
        attributes=items["attributes"],
        user_ids=user_ids,
        user_segment=seg_idx,
        segments=segments,
        queries=[str(q) for q in query_texts],
        session_user=first_user[list_order],
        session_time=list_time[list_order].astype(np.int64),
        session_query=list_query[list_order],
        session_offsets=offsets,
        imp_item=pair_item_row[pair_order],
        imp_position=np.where(np.isfinite(imp_pos), imp_pos, -1).astype(np.int64),
        imp_click=click[pair_order],
        imp_purchase=purchase[pair_order],
        imp_relevance=None if rel_pair is None else rel_pair[pair_order],
        session_context=key_c[starts][list_order].astype(np.int64),
        session_group=key_s[starts][list_order].astype(np.int64),
        item_group=items["item_group"],
        groups=items["groups"],
        item_created=items["item_created"],
        item_attr_offsets=items["item_attr_offsets"],
        item_attr_values=items["item_attr_values"],
    )
    if len(data.session_time) == 0:
        rep.error(ef, None, "no events left to learn from")
        rep.raise_if_errors()
    data.cuts = _time_cuts(data.session_time, cfg.split)
    _check_enough(data, ef, rep, events_l.labels["timestamp"], cfg.split)
    rep.summary = _summary(data, events_l.rows, int(dup.sum()), int(unknown.sum()), len(new_users))
    rep.summary["position_base"] = _base_said(base, d.position_base)
    if rep.sources:
        rep.summary["sources"] = rep.sources
    rep.raise_if_errors()
    return data, rep


def _check_enough(data: ShopData, file: str, rep: ValidationReport, label: str, split_cfg) -> None:
    split = split_by_time(data)
    empty = [part for part in ("stats", "train", "val", "test") if not len(split[part])]
    if empty:
        t0, t1 = int(data.session_time.min()), int(data.session_time.max())
        rep.error(
            file,
            label,
            f"the events span {_duration(t1 - t0)} ({day(t0)} .. {day(t1)}): too short for the split "
            f"(statistics | train | validation | test at {split_cfg.stats} | {split_cfg.train} | "
            f"{split_cfg.validation} of the span), which leaves the {_and(empty)} window"
            f"{'s' if len(empty) > 1 else ''} without a list. Export events over more time (a timestamp that is "
            f"the same on every row is often the export's own time), or move the split's cut points",
        )
        return
    for part, need in (("train", MIN_TRAIN_CLICKS), ("val", MIN_EVAL_CLICKS), ("test", MIN_EVAL_CLICKS)):
        imp = impressions_of(data, split[part])
        clicks = int(data.imp_click[imp].sum())
        negatives = len(imp) - clicks
        t = data.session_time[split[part]]
        window = f"{day(t.min())} .. {day(t.max())}" if len(t) else "an empty window"
        if clicks < need or negatives < need:
            rep.error(
                file,
                None,
                f"too few events to {'train' if part == 'train' else 'evaluate'}: the {part} "
                f"window ({window}, split in the config) has {clicks} clicked and {negatives} "
                f"unclicked impressions; at least {need} of each are needed. Export more days "
                f"of events, or move the split's cut points",
            )


def _base_said(base: int | None, setting) -> str:
    if base is None:
        return "no known position"
    return f"{base} = top ({'decided from the data, data.position_base: auto' if setting == 'auto' else 'set'})"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _duration(seconds: int) -> str:
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds} seconds"


def _summary(data: ShopData, n_events: int, dups: int, unknown: int, new_users: int) -> dict:
    split = split_by_time(data)
    return {
        "contract_version": CONTRACT_VERSION,
        "items": len(data.item_ids),
        "users": len(data.user_ids),
        "users_only_in_events": new_users,
        "events": n_events,
        "duplicate_events_dropped": dups,
        "unknown_item_events": unknown,
        "lists": len(data.session_time),
        "search_lists": int((data.session_query >= 0).sum()),
        "product_page_lists": int((data.session_context >= 0).sum()),
        "impressions": data.n_impressions,
        "clicks": int(data.imp_click.sum()),
        "purchases": int(data.imp_purchase.sum()),
        "anonymous_lists": int((data.session_user < 0).sum()),
        "windows": {
            k: [day(data.session_time[v].min()), day(data.session_time[v].max())] if len(v) else []
            for k, v in split.items()
        },
        "true_relevance": data.imp_relevance is not None,
    }
