"""The page of a ranked list: sort, one tile per variant group, the page's offset, the facet counts.

``arrange`` works on the *relevant set*: the candidates a request ranked that may be shown (in stock,
passing the filters). For the catalogue calls that is the up to ``retrieval.candidates`` items (300 by
default) nearest the query or the user that pass the filters; for ``search``/``recommend`` it is the
caller's candidates that pass them. Over that set:

1. it is ordered by the ranker's score, or by ``sort`` (``price_asc``/``price_desc`` by the current
   price, ``newest`` by listing date; ties by score);
2. each variant group keeps its first ``per_group`` items in that order (0: every item). A group is
   represented by its best-ranked variant (by relevance), or its cheapest for ``price_asc``, and so on;
3. ``matches`` counts what is left (groups, or items with ``per_group`` 0): the pages there are;
4. the page is ``[offset, offset + k)`` of it. One request's pages are one order: page 2 continues page 1;
5. each facet counts, per value, the results of the relevant set with that value (a group counts once
   for a value any of its matching variants has), so a value shown with a count returns results when
   the shopper selects it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.arrays import Array
from runtime.catalog import Catalog, category_levels
from runtime.lexicon import CATEGORY_SEPARATOR
from runtime.options import CATEGORY_FACET, FACET_VALUES, ListingOptions
from runtime.understand import NOTHING, Understood


def notes_tensor(understood: Understood, rules: list[str]) -> Array:
    """NOTES: the feature or retrieval step's word to topk (BYTES [1], JSON)."""
    notes: dict[str, Any] = {}
    if understood.chips:
        notes["understood"] = understood.to_dict()
    if rules:
        notes["rules"] = rules
    return np.array([json.dumps(notes).encode()], object)


def read_notes(tensor: Array | None) -> tuple[Understood, list[str]]:
    if tensor is None:
        return NOTHING, []
    first = np.asarray(tensor, object).reshape(-1)[0]
    notes = json.loads(first.decode("utf-8") if isinstance(first, bytes) else str(first))
    return Understood.from_dict(notes.get("understood", {})), list(notes.get("rules", []))


@dataclass(frozen=True)
class Listing:
    """Positions into the request's candidate arrays (the page, best first), each one's group and how many
    of its variants are in the relevant set, and the response's summary (``info``)."""

    page: Array
    groups: Array
    matched: Array
    info: dict[str, Any]


def order_of(scores: Array, sort: str, prices: Array, created: Array) -> Array:
    """Positions in display order; ties (and unknown prices or dates, which go last) by score."""
    by_score = -np.asarray(scores, np.float64)
    order: Array
    if sort == "relevance":
        order = np.argsort(by_score, kind="stable")
    elif sort == "newest":
        order = np.lexsort((by_score, -np.asarray(created, np.float64)))  # unknown (-1) sorts after every date
    else:
        price = np.asarray(prices, np.float64)
        order = np.lexsort((by_score, np.where(np.isfinite(price), price if sort == "price_asc" else -price, np.inf)))
    return order


def first_per_group(groups: Array, per_group: int) -> Array:
    """A mask over ``groups`` (in display order): True for the first ``per_group`` of each group."""
    n = len(groups)
    if per_group <= 0 or n == 0:
        return np.ones(n, bool)
    by_group = np.argsort(groups, kind="stable")  # each group's items stay in display order
    sorted_groups = groups[by_group]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, np.int64)
    rank[by_group] = np.arange(n) - run_start
    return rank < per_group


def arrange(
    catalog: Catalog | None,
    options: ListingOptions,
    scores: Array,
    rows: Array,
    ids: Array,
    prices: Array,
    k: int,
    pins: Array | None = None,
) -> Listing:
    """The page of ``k`` results for ``options`` over the relevant set (all the candidates given).
    ``catalog`` None (a release built before the catalogue tables): relevance order, no groups or facets.
    ``pins``: a merchandising rule's position of each candidate (1 = first; -1 none): a pinned item is put
    there in the whole ordered list (it stands for its group), before the page is cut."""
    n = len(scores)
    rows = np.asarray(rows, np.int64)
    created = catalog.created[rows] if catalog is not None else np.full(n, -1)
    order = order_of(scores, options.sort, prices, created)
    # every item a group of its own without the catalogue
    groups = catalog.group_of(rows, ids) if catalog is not None else -1 - np.asarray(ids, np.int64)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    matched = counts[inverse]
    shown = order[first_per_group(groups[order], options.per_group)]
    if pins is not None and (np.asarray(pins) >= 0).any():
        shown = pin(shown, np.asarray(pins), groups, options.per_group > 0)
    page = shown[options.offset : options.offset + k]
    info: dict[str, Any] = {"matches": int(len(shown)), "offset": options.offset, "sort": options.sort}
    if catalog is not None:
        info["per_group"] = options.per_group
        if options.facets:
            info["facets"] = {
                name: facet(catalog, name, rows[order], groups[order], np.asarray(prices)[order])
                for name in options.facets
            }
    return Listing(page, groups[page], matched[page], info)


def pin(shown: Array, pins: Array, groups: Array, grouped: bool) -> Array:
    """``shown`` (positions in display order) with each pinned candidate moved to its position (1-based;
    past the end: last); grouped, it replaces its group's other items."""
    pinned = np.flatnonzero(pins >= 0)
    pinned = pinned[np.argsort(pins[pinned], kind="stable")]
    drop = np.isin(groups[shown], groups[pinned]) if grouped else np.isin(shown, pinned)
    out = shown[~drop].tolist()
    for position in pinned.tolist():
        out.insert(min(int(pins[position]) - 1, len(out)), position)
    return np.array(out, np.int64)


def facet(catalog: Catalog, name: str, rows: Array, groups: Array, prices: Array) -> list[dict[str, Any]]:
    """The values of facet ``name`` over the relevant set's items (``rows``, their ``groups`` and current
    ``prices``) and how many results (distinct groups) have each, most first, then by label."""
    if name == "price":
        return _price_facet(catalog.vocabulary.price_edges, groups, prices)
    if name == "brand":
        values, owners = catalog.brand[rows].astype(np.int64), groups
        labels = catalog.vocabulary.brands
    elif name.startswith(CATEGORY_FACET):
        level = int(name.partition(".")[2] or 1)
        labels, of_category = _category_labels(catalog.vocabulary.categories, level)
        values, owners = of_category[catalog.category[rows]], groups
    else:
        attrs = catalog.attrs[rows]  # [n, W]
        named = (attrs >= 0) & (catalog.attribute_names[attrs] == name)
        cell_rows, cells = np.nonzero(named)
        values, owners = attrs[cell_rows, cells].astype(np.int64), groups[cell_rows]
        labels = [a.partition(":")[2].strip() if ":" in a else a for a in catalog.vocabulary.attributes]
    return _count(values, owners, labels)


def _count(values: Array, owners: Array, labels: list[str]) -> list[dict[str, Any]]:
    keep = values >= 0
    if not keep.any():
        return []
    pairs = np.unique(np.stack([values[keep], owners[keep]]), axis=1)
    counts = np.bincount(pairs[0], minlength=len(labels))
    found = np.flatnonzero(counts)
    ranked = sorted(found.tolist(), key=lambda v: (-counts[v], labels[v]))[:FACET_VALUES]
    return [{"value": labels[v], "count": int(counts[v])} for v in ranked]


def _category_labels(categories: list[str], level: int) -> tuple[list[str], Array]:
    """The distinct paths cut at ``level`` segments, and for each category (plus -1) the index of its cut
    (-1 where the path is shallower than ``level``)."""
    labels: list[str] = []
    index: dict[str, int] = {}
    of_category = np.full(len(categories) + 1, -1, np.int64)
    for i, path in enumerate(categories):
        parts = [p.strip() for p in path.split(CATEGORY_SEPARATOR) if p.strip()]
        if len(parts) < level:
            continue
        label = f" {CATEGORY_SEPARATOR} ".join(parts[:level])
        key = " > ".join(category_levels(label))
        if key not in index:
            index[key] = len(labels)
            labels.append(label)
        of_category[i] = index[key]
    return labels, of_category


def _price_facet(edges: list[float], groups: Array, prices: Array) -> list[dict[str, Any]]:
    """Price buckets ``[edge_i, edge_i+1)``, in price order, each with the results priced in it."""
    price = np.asarray(prices, np.float64)
    known = np.isfinite(price)
    buckets = np.searchsorted(np.asarray(edges, np.float64), price[known], side="right")
    bounds = [None, *edges, None]
    out = []
    pairs = np.unique(np.stack([buckets, groups[known]]), axis=1) if known.any() else np.zeros((2, 0), np.int64)
    counts = np.bincount(pairs[0], minlength=len(edges) + 1)
    for b, count in enumerate(counts.tolist()):
        if count:
            low, high = bounds[b], bounds[b + 1]
            label = f"{low:g}+" if high is None else (f"under {high:g}" if low is None else f"{low:g}-{high:g}")
            entry: dict[str, Any] = {"value": label, "count": count}
            if low is not None:
                entry["min"] = low
            if high is not None:
                entry["max"] = high
            out.append(entry)
    return out
