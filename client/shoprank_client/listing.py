"""Filters, variant groups, pages, sort and facets: the ``shoprank_options`` request parameter.

Every ranking call takes the same keywords (``filters``, ``per_group``, ``offset``, ``sort``, ``facets``;
``include_own_group`` on ``recommend_catalog``). The SDK sends them as one request parameter,
``shoprank_options``, holding a JSON object; a raw ``tritonclient`` caller sends the same::

    client.infer("search_catalog", inputs, parameters={"shoprank_options": json.dumps(
        {"filter": {"colour": "black", "price": {"max": 50}}, "per_group": 1, "offset": 10})})

``Filters`` covers the usual fields (all must hold); ``any_of``, ``all_of`` and ``none_of`` combine
filters, or pass the server's filter tree as a dict (docs/serving.md lists its fields).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoprank_client.errors import InvalidRequest

OPTIONS_PARAMETER = "shoprank_options"
SORTS = ("relevance", "price_asc", "price_desc", "newest")
UNDERSTAND = ("filter", "boost", "off")  # how a query's understood words apply (None: the server's default)
# which kinds of understood words apply (None: the server's default, price and attribute)
UNDERSTAND_FIELDS = ("price", "attribute", "brand", "category")
FilterTree = Mapping[str, Any]


def _values(name: str, value: str | Sequence[str]) -> str | list[str]:
    if isinstance(value, str):
        return value
    values = list(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise InvalidRequest(f"filters.{name}: expected a string or a non-empty list of strings", "filters")
    return values


@dataclass(frozen=True)
class Filters:
    """The common filter fields; every field given must hold. ``attributes``: the catalogue's ``name:value``
    attributes by name, e.g. ``{"colour": ["black", "navy"], "size": "M"}``. Prices: ``min_price <= price <
    max_price``, the current price."""

    category: str | Sequence[str] | None = None  # a path prefix ("Women > Dresses") or several
    brand: str | Sequence[str] | None = None
    attributes: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool | None = None
    created_after: str | int | None = None  # an ISO-8601 date or unix seconds

    def to_tree(self) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        if self.category is not None:
            tree["category"] = _values("category", self.category)
        if self.brand is not None:
            tree["brand"] = _values("brand", self.brand)
        for name, value in self.attributes.items():
            tree[name] = _values(name, value)
        price = {}
        for key, bound in (("min", self.min_price), ("max", self.max_price)):
            if bound is not None:
                if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                    raise InvalidRequest(f"filters.{key}_price: expected a number, got {bound!r}", "filters")
                price[key] = bound
        if price:
            tree["price"] = price
        if self.in_stock is not None:
            tree["in_stock"] = bool(self.in_stock)
        if self.created_after is not None:
            tree["created_after"] = self.created_after
        return tree


def _tree(f: Filters | FilterTree) -> dict[str, Any]:
    if isinstance(f, Filters):
        return f.to_tree()
    if isinstance(f, Mapping):
        return dict(f)
    raise InvalidRequest(f"filters: expected Filters or a dict, got {type(f).__name__}", "filters")


def any_of(*filters: Filters | FilterTree) -> dict[str, Any]:
    """Holds when one of ``filters`` does."""
    return {"any": [_tree(f) for f in filters]}


def all_of(*filters: Filters | FilterTree) -> dict[str, Any]:
    """Holds when every one of ``filters`` does."""
    return {"all": [_tree(f) for f in filters]}


def none_of(*filters: Filters | FilterTree) -> dict[str, Any]:
    """Holds when none of ``filters`` does."""
    return {"not": any_of(*filters)}


def options_parameter(
    filters: Filters | FilterTree | None = None,
    per_group: int | None = None,
    offset: int = 0,
    sort: str = "relevance",
    facets: Sequence[str] = (),
    include_own_group: bool = False,
    understand: str | None = None,
    understand_fields: Sequence[str] | None = None,
) -> dict[str, str] | None:
    """The request's ``parameters`` for these keywords, or None when all are the defaults (nothing is sent)."""
    options: dict[str, Any] = {}
    if filters is not None:
        tree = _tree(filters)
        if tree:
            options["filter"] = tree
    if per_group is not None:
        if isinstance(per_group, bool) or not isinstance(per_group, int) or per_group < 0:
            raise InvalidRequest(f"per_group: expected an integer >= 0, got {per_group!r}", "per_group")
        options["per_group"] = per_group
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidRequest(f"offset: expected an integer >= 0, got {offset!r}", "offset")
    if offset:
        options["offset"] = offset
    if sort not in SORTS:
        raise InvalidRequest(f"sort: expected one of {', '.join(SORTS)}, got {sort!r}", "sort")
    if sort != "relevance":
        options["sort"] = sort
    if isinstance(facets, str) or not all(isinstance(f, str) for f in facets):
        raise InvalidRequest("facets: expected a list of field names", "facets")
    if facets:
        options["facets"] = list(facets)
    if include_own_group:
        options["include_own_group"] = True
    if understand is not None:
        if understand not in UNDERSTAND:
            raise InvalidRequest(
                f"understand: expected one of {', '.join(UNDERSTAND)}, got {understand!r}", "understand"
            )
        options["understand"] = understand
    if understand_fields is not None:
        fields = [understand_fields] if isinstance(understand_fields, str) else list(understand_fields)
        wrong = [f for f in fields if f not in UNDERSTAND_FIELDS]
        if wrong:
            raise InvalidRequest(
                f"understand_fields: expected names among {', '.join(UNDERSTAND_FIELDS)}, got {wrong[0]!r}",
                "understand_fields",
            )
        options["understand_fields"] = fields
    return {OPTIONS_PARAMETER: json.dumps(options)} if options else None


@dataclass(frozen=True)
class FacetValue:
    """One value of a facet and how many results have it; a price bucket also has its bounds."""

    value: str
    count: int
    min: float | None = None
    max: float | None = None


def parse_info(raw: Any) -> dict[str, Any]:
    """The server's RESULT_INFO (one JSON object) as a dict; ``{}`` when the release has none."""
    if raw is None or len(raw) == 0:
        return {}
    first = raw.reshape(-1)[0]
    text = first.decode("utf-8") if isinstance(first, bytes) else str(first)
    info = json.loads(text)
    return info if isinstance(info, dict) else {}


def parse_facets(info: Mapping[str, Any]) -> dict[str, tuple[FacetValue, ...]]:
    return {
        name: tuple(FacetValue(v["value"], int(v["count"]), v.get("min"), v.get("max")) for v in values)
        for name, values in info.get("facets", {}).items()
    }
