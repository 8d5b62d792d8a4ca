"""A listing request's options: filters, variant groups, page, sort and facets (docs/serving.md).

Every served ranking call (``search``, ``recommend``, ``search_catalog``, ``recommend_catalog``) takes them
as one request parameter, ``shoprank_options``: a JSON object (the SDK builds it from keywords)::

    {"filter": {"category": "Women > Dresses", "colour": ["black", "navy"],
                "price": {"max": 50}, "in_stock": true},
     "per_group": 1, "offset": 10, "sort": "price_asc", "facets": ["brand", "size", "price"]}

``filter`` is a tree. An object's keys must all hold (and); ``{"any": [f, ...]}`` holds when one of its
filters does (or), ``{"all": [...]}`` when all do, ``{"not": f}`` when ``f`` does not. The fields:

* ``category``: a path or a list of paths; an item matches under a path prefix, whole segments
  (``"Women"`` matches ``"Women > Dresses"``, not ``"Womenswear"``), case-insensitive;
* ``brand``: a name or a list (case-insensitive);
* an attribute's name (``colour``, ``size``: whatever ``name:value`` attributes the catalogue has) or
  ``attribute`` for the unnamed ones: a value or a list of values;
* ``price``: ``{"min": a, "max": b}``, ``a <= price < b``, either bound optional: the current price
  (the online store's, else the build's);
* ``in_stock``: true (current stock > 0) or false;
* ``created_after``: unix seconds or an ISO-8601 date; items with no listing date never match;
* ``exclude``: a list of item ids.

A list of values matches any of them. Every option is checked; a wrong one is INVALID_ARGUMENT naming
its path in the object (``shoprank_options.filter.any[1].price: min 80 is above max 50``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from runtime.arrays import Array
from runtime.catalog import UNNAMED, Catalog
from runtime.errors import InvalidInput

DEFAULT_MODE = "filter"  # how a query's understood constraints apply (runtime/understand.py measures the choice)
MODES = ("filter", "boost", "off")
UNDERSTOOD_FIELDS = ("price", "attribute", "brand", "category")
DEFAULT_UNDERSTOOD_FIELDS = ("price", "attribute")  # measured: brand and category filters lost on the demo

OPTIONS_PARAMETER = "shoprank_options"  # the request parameter (KServe v2 "parameters"), a JSON string
SORTS = ("relevance", "price_asc", "price_desc", "newest")
FIELDS = ("category", "brand", "price", "in_stock", "created_after", "exclude", UNNAMED)
COMBINATORS = ("all", "any", "not")
MAX_OPTIONS_BYTES = 16_384
MAX_VALUES = 100  # values in one field's list
MAX_CONDITIONS = 32  # fields in one filter, all levels together
MAX_DEPTH = 4  # nested all/any/not
MAX_PER_GROUP = 100
MAX_OFFSET = 1000  # a page starts at most this far down (the relevant set holds at most MAX_CANDIDATES)
MAX_FACETS = 16
FACET_VALUES = 50  # values listed per facet, most results first
CATEGORY_FACET = "category"  # counted by the path's first level; "category.2" by its first two, and so on


@dataclass(frozen=True)
class ItemView:
    """The values a filter reads, for the item rows it is asked about: the rows (-1: unknown), the current
    price and stock (float, NaN unknown) and the ids (for ``exclude``)."""

    rows: Array
    price: Array
    in_stock: Array
    ids: Array | None = None


Test = Callable[[Catalog, ItemView], Array]


@dataclass(frozen=True)
class Filter:
    """A parsed filter: ``test`` gives a bool per item of a view. ``reads_live``: it reads the price or stock,
    which move between the build and now (``runtime/catalog_filter.py`` keeps the prices its masks read up to
    date, and each candidate is checked again with its current values)."""

    test: Test
    text: str  # canonical JSON: the cache key of the catalogue-wide mask
    reads_live: bool

    def __call__(self, catalog: Catalog, view: ItemView) -> Array:
        return np.asarray(self.test(catalog, view), bool)

    def __and__(self, other: Filter | None) -> Filter:
        if other is None:
            return self
        return Filter(
            _all([self.test, other.test]),
            json.dumps({"all": [json.loads(self.text), json.loads(other.text)]}, sort_keys=True),
            self.reads_live or other.reads_live,
        )


@dataclass(frozen=True)
class ListingOptions:
    """The parsed options; ``ListingOptions()`` is a request that sent none."""

    filter: Filter | None = None
    per_group: int = 1  # at most this many results per variant group; 0: no grouping
    include_own_group: bool = False  # recommendations beside an item: its own group may be recommended
    offset: int = 0
    sort: str = "relevance"
    facets: tuple[str, ...] = ()
    understand: str = DEFAULT_MODE  # the query's understood constraints: filter, boost or off (runtime/understand.py)
    understand_fields: tuple[str, ...] = DEFAULT_UNDERSTOOD_FIELDS  # which kinds of them apply
    given: dict[str, Any] = field(default_factory=dict)  # what the request sent, for the response's echo


NO_OPTIONS = ListingOptions()


def _fail(path: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{OPTIONS_PARAMETER}.{path}", problem)


def _strings(path: str, value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise _fail(path, "an empty list matches nothing; leave the field out instead")
    if len(values) > MAX_VALUES:
        raise _fail(path, f"{len(values)} values is more than the limit of {MAX_VALUES}")
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise _fail(f"{path}[{i}]" if isinstance(value, list) else path, f"expected a non-empty string, got {v!r}")
    return values


def _number(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, f"expected a number, got {value!r}")
    return float(value)


def unix_seconds(value: Any) -> float | None:
    """An ISO-8601 date (UTC unless it says) or unix seconds as unix seconds; None when it is neither."""
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _timestamp(path: str, value: Any) -> int:
    seconds = unix_seconds(value)
    if seconds is None:
        raise _fail(path, f"expected unix seconds or an ISO-8601 date, got {value!r}")
    return int(seconds)


class _Parser:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.conditions = 0
        self.live = False

    def node(self, path: str, spec: Any, depth: int) -> Test:
        if depth > MAX_DEPTH:
            raise _fail(path, f"nested deeper than {MAX_DEPTH} levels")
        if not isinstance(spec, dict) or not spec:
            raise _fail(path, f"expected a non-empty object of fields, got {json.dumps(spec)[:80]}")
        tests = [self.field(f"{path}.{key}", key, value, depth) for key, value in spec.items()]
        return tests[0] if len(tests) == 1 else _all(tests)

    def field(self, path: str, key: str, value: Any, depth: int) -> Test:
        c = self.catalog
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise _fail(path, "expected a non-empty list of filters")
            parts = [self.node(f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value)]
            return _all(parts) if key == "all" else _any(parts)
        if key == "not":
            inner = self.node(path, value, depth + 1)
            return lambda cat, view: ~inner(cat, view)
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise _fail(path, f"more than {MAX_CONDITIONS} conditions in one filter")
        if key == "category":
            table = c.categories_under(_strings(path, value))
            return lambda cat, view: table[cat.category[view.rows]]
        if key == "brand":
            table = c.brands_named(_strings(path, value))
            return lambda cat, view: table[cat.brand[view.rows]]
        if key == "price":
            return self.price(path, value)
        if key == "in_stock":
            if not isinstance(value, bool):
                raise _fail(path, f"expected true or false, got {value!r}")
            self.live = True
            return lambda cat, view: (view.in_stock > 0) == value
        if key == "created_after":
            after = _timestamp(path, value)
            return lambda cat, view: cat.created[view.rows] > after
        if key == "exclude":
            ids = self.ids(path, value)
            return lambda cat, view: np.ones(len(view.rows), bool) if view.ids is None else ~np.isin(view.ids, ids)
        name = key.strip().lower()
        if name not in c.names:
            known = ", ".join([*FIELDS, *(n for n in c.names if n != UNNAMED), *COMBINATORS])
            raise _fail(path, f"unknown field {key!r}; this catalogue's fields are {known}")
        table = c.attributes_named(name, _strings(path, value))
        return lambda cat, view: table[cat.attrs[view.rows]].any(axis=1)

    def price(self, path: str, value: Any) -> Test:
        if not isinstance(value, dict) or not value or set(value) - {"min", "max"}:
            raise _fail(path, f"expected {{'min': a, 'max': b}} (either optional), got {json.dumps(value)[:80]}")
        low = _number(f"{path}.min", value["min"]) if "min" in value else -math.inf
        high = _number(f"{path}.max", value["max"]) if "max" in value else math.inf
        if "min" in value and low < 0:
            raise _fail(f"{path}.min", f"prices are not negative, got {value['min']}")
        if "max" in value and high <= 0:
            raise _fail(f"{path}.max", f"prices are positive: max {value['max']} leaves nothing")
        if low >= high:
            raise _fail(path, f"min {value['min']} is not below max {value['max']}: the range is empty")
        self.live = True
        return lambda cat, view: (view.price >= low) & (view.price < high)

    def ids(self, path: str, value: Any) -> Array:
        if not isinstance(value, list) or len(value) > MAX_VALUES:
            raise _fail(path, f"expected a list of at most {MAX_VALUES} item ids")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise _fail(path, "expected integer item ids (the SDK turns string SKUs into them)")
        return np.array(value, np.int64)


def _all(tests: list[Test]) -> Test:
    def test(cat: Catalog, view: ItemView) -> Array:
        out = np.asarray(tests[0](cat, view), bool)
        for t in tests[1:]:
            out = out & t(cat, view)
        return out

    return test


def _any(tests: list[Test]) -> Test:
    def test(cat: Catalog, view: ItemView) -> Array:
        out = np.asarray(tests[0](cat, view), bool)
        for t in tests[1:]:
            out = out | t(cat, view)
        return out

    return test


def parse_filter(spec: Any, catalog: Catalog, path: str = "filter") -> Filter:
    parser = _Parser(catalog)
    test = parser.node(path, spec, 0)
    return Filter(test, json.dumps(spec, sort_keys=True), parser.live)


def _int(path: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(path, f"expected an integer in {low}..{high}, got {value!r}")
    return value


def _facet_names(value: Any, catalog: Catalog) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_FACETS:
        raise _fail("facets", f"expected a list of at most {MAX_FACETS} field names")
    names = []
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise _fail(f"facets[{i}]", f"expected a field name, got {v!r}")
        name = v.strip().lower()
        level = name.partition(".")[2]
        if name.startswith(CATEGORY_FACET) and (name == CATEGORY_FACET or (level.isdigit() and int(level) >= 1)):
            names.append(name)
        elif name in ("brand", "price") or name in catalog.names:
            names.append(name)
        else:
            known = ", ".join(["brand", "price", "category", "category.2", *catalog.names])
            raise _fail(f"facets[{i}]", f"unknown facet {v!r}; this catalogue has {known}")
    return tuple(dict.fromkeys(names))


def parse_options(raw: str | None, catalog: Catalog | None, filters: bool = True) -> ListingOptions:
    """The request's ``shoprank_options`` (None or empty: the defaults), checked against the catalogue
    (None: a release built before the catalogue tables, which takes no options). ``filters`` False: the filter
    is not compiled (topk pages what the feature or retrieval step filtered and checked already)."""
    if raw is None or raw == "":
        return NO_OPTIONS
    if catalog is None:
        raise InvalidInput(OPTIONS_PARAMETER, "this release was built without the catalogue tables: rebuild it")
    if len(raw) > MAX_OPTIONS_BYTES:
        raise InvalidInput(OPTIONS_PARAMETER, f"{len(raw)} bytes is longer than the limit of {MAX_OPTIONS_BYTES}")
    try:
        given = json.loads(raw)
    except ValueError as err:
        raise InvalidInput(OPTIONS_PARAMETER, f"not valid JSON ({err})") from None
    if not isinstance(given, dict):
        raise InvalidInput(OPTIONS_PARAMETER, f"expected a JSON object, got {type(given).__name__}")
    known = ("filter", "per_group", "include_own_group", "offset", "sort", "facets", "understand", "understand_fields")
    for key in given:
        if key not in known:
            raise _fail(key, f"unknown option; expected one of {', '.join(known)}")
    sort = given.get("sort", "relevance")
    if sort not in SORTS:
        raise _fail("sort", f"expected one of {', '.join(SORTS)}, got {sort!r}")
    understand = given.get("understand", DEFAULT_MODE)
    if understand not in MODES:
        raise _fail("understand", f"expected one of {', '.join(MODES)}, got {understand!r}")
    fields = given.get("understand_fields", list(DEFAULT_UNDERSTOOD_FIELDS))
    if not isinstance(fields, list) or any(f not in UNDERSTOOD_FIELDS for f in fields):
        raise _fail("understand_fields", f"expected a list of {', '.join(UNDERSTOOD_FIELDS)}, got {fields!r}")
    own = given.get("include_own_group", False)
    if not isinstance(own, bool):
        raise _fail("include_own_group", f"expected true or false, got {own!r}")
    return ListingOptions(
        filter=parse_filter(given["filter"], catalog) if "filter" in given and filters else None,
        per_group=_int("per_group", given.get("per_group", 1), 0, MAX_PER_GROUP),
        include_own_group=own,
        offset=_int("offset", given.get("offset", 0), 0, MAX_OFFSET),
        sort=sort,
        facets=_facet_names(given.get("facets", []), catalog),
        understand=understand,
        understand_fields=tuple(fields),
        given=given,
    )
