"""Merchandising rules: pin, boost, bury and hide, changed without a rebuild, live on every server in seconds.

The rules are one JSON document in the online store (``{prefix}:rules``, written by ``python -m online rules
set FILE --repo REPO``, which validates them first). Every feature and retrieval model polls it every
``POLL_S`` and applies the version it last read; a document that does not parse is logged and the rules
before it stay. A rule::

    {"id": "xmas-dress", "kind": "pin", "items": [4711], "position": 1, "query": ["dress", "dresses"],
     "start": "2026-12-01", "end": "2026-12-27"}
    {"id": "push-nordlys", "kind": "boost", "match": {"brand": "Nordlys"}, "weight": 0.5}
    {"id": "bury-beige", "kind": "boost", "match": {"colour": "beige"}, "weight": -1.0,
     "category": "Women > Coats"}
    {"id": "recall-0042", "kind": "hide", "items": [4242]}

* ``kind``: ``pin`` (``items``: one item, shown at ``position``, 1 = first, when it may be shown: in stock,
  passing the request's filter), ``boost`` (``weight`` added to the final score of the items it matches; a
  negative weight buries), ``hide`` (never returned);
* what it applies to: ``items`` (item ids as served: a string SKU's stable id, which the CLI computes) and/or
  ``match`` (a filter tree, ``runtime/options.py``);
* when: ``query`` (a search whose words equal one of these), ``category`` (a request whose filter's
  ``category`` is this path: a category page), neither (every request); ``start``/``end`` (ISO-8601 or unix
  seconds, either optional).

The response's RESULT_INFO lists the rules that changed the request's candidates (``rules``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.arrays import Array
from runtime.catalog import Catalog, category_levels
from runtime.errors import InvalidInput
from runtime.lexicon import words
from runtime.options import Filter, ItemView, ListingOptions, parse_filter, unix_seconds

logger = logging.getLogger(__name__)

POLL_S = 1.0  # how often a model reads the rules' document (one GET)
KINDS = ("pin", "boost", "hide")
MAX_RULES = 1000
MAX_POSITION = 100
MAX_WEIGHT = 100.0


class RuleError(InvalidInput):
    """A rule is wrong; the field is ``rules[i] (id 'x').field``."""


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    items: Array  # int64 ids
    match: Filter | None
    weight: float = 0.0
    position: int = 0
    queries: frozenset[str] = frozenset()
    categories: tuple[tuple[str, ...], ...] = ()
    start: float = -math.inf
    end: float = math.inf

    def active(self, now: float, query: str | None, category: tuple[str, ...] | None) -> bool:
        if not self.start <= now < self.end:
            return False
        if self.queries and (query is None or words(query) not in self.queries):
            return False
        return not self.categories or (category is not None and category in self.categories)

    def targets(self, catalog: Catalog, view: ItemView) -> Array:
        hit = np.zeros(len(view.rows), bool)
        if self.items.size and view.ids is not None:
            hit |= np.isin(view.ids, self.items)
        if self.match is not None:
            hit |= self.match(catalog, view)
        return hit


@dataclass
class Effects:
    """What the rules do to one request's candidates: hidden, score offsets, pinned positions (-1 none)."""

    hidden: Array
    boosts: Array
    pins: Array
    applied: list[str] = field(default_factory=list)


def _when(path: str, value: Any) -> float:
    seconds = unix_seconds(value)
    if seconds is None:
        raise RuleError(path, f"expected an ISO-8601 date or unix seconds, got {value!r}")
    return seconds


def parse_rule(raw: Any, index: int, catalog: Catalog) -> Rule:
    name = raw.get("id") if isinstance(raw, dict) else None
    where = f"rules[{index}]" + (f" (id {name!r})" if isinstance(name, str) else "")
    if not isinstance(raw, dict):
        raise RuleError(where, f"expected an object, got {type(raw).__name__}")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"{where}.id", "every rule needs an id (a non-empty string), to be named in answers")
    known = {"id", "kind", "items", "match", "weight", "position", "query", "category", "start", "end", "note"}
    for key in raw:
        if key not in known:
            raise RuleError(f"{where}.{key}", f"unknown field; a rule has {', '.join(sorted(known))}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise RuleError(f"{where}.kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    items = raw.get("items", [])
    if not isinstance(items, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise RuleError(f"{where}.items", "expected a list of item ids (integers: `python -m online rules` maps SKUs)")
    match = None
    if "match" in raw:
        try:
            match = parse_filter(raw["match"], catalog, "match")
        except InvalidInput as err:
            raise RuleError(f"{where}.{err.field.split('.', 1)[1]}", err.problem) from None
    if kind == "pin":
        if len(items) != 1 or match is not None:
            raise RuleError(f"{where}.items", "a pin names exactly one item (and no match)")
        position = raw.get("position")
        if isinstance(position, bool) or not isinstance(position, int) or not 1 <= position <= MAX_POSITION:
            raise RuleError(f"{where}.position", f"expected an integer in 1..{MAX_POSITION}, got {position!r}")
    else:
        position = 0
        if not items and match is None:
            raise RuleError(where, f"a {kind} rule needs items or match")
    weight = raw.get("weight", 0.0)
    if kind == "boost":
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < abs(weight) <= MAX_WEIGHT:
            raise RuleError(f"{where}.weight", f"expected a non-zero number in -{MAX_WEIGHT}..{MAX_WEIGHT}")
    elif "weight" in raw:
        raise RuleError(f"{where}.weight", f"only a boost has a weight, this is a {kind}")
    query = raw.get("query", [])
    queries = [query] if isinstance(query, str) else query
    if not isinstance(queries, list) or not all(isinstance(q, str) and words(q) for q in queries):
        raise RuleError(f"{where}.query", "expected a query or a list of queries (text with words)")
    category = raw.get("category")
    categories = [category] if isinstance(category, str) else category or []
    if not isinstance(categories, list) or not all(isinstance(p, str) and category_levels(p) for p in categories):
        raise RuleError(f"{where}.category", "expected a category path or a list of paths")
    start = _when(f"{where}.start", raw["start"]) if "start" in raw else -math.inf
    end = _when(f"{where}.end", raw["end"]) if "end" in raw else math.inf
    if start >= end:
        raise RuleError(f"{where}.end", "the window ends before it starts")
    return Rule(
        id=name,
        kind=kind,
        items=np.array(items, np.int64),
        match=match,
        weight=float(weight),
        position=position,
        queries=frozenset(words(q) for q in queries),
        categories=tuple(tuple(category_levels(p)) for p in categories),
        start=start,
        end=end,
    )


def rules_list(text: str) -> list[Any]:
    """The raw rules of the document ``{"rules": [...]}``; RuleError when it is not one."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise RuleError("rules", f"not valid JSON ({err})") from None
    rules = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(rules, list):
        raise RuleError("rules", 'expected {"rules": [...]}')
    if len(rules) > MAX_RULES:
        raise RuleError("rules", f"{len(rules)} rules is more than the limit of {MAX_RULES}")
    return rules


def parse_rules(text: str, catalog: Catalog) -> list[Rule]:
    """The rules' document (``{"rules": [...]}``), every rule checked; RuleError names the first wrong one."""
    rules = rules_list(text)
    parsed = [parse_rule(raw, i, catalog) for i, raw in enumerate(rules)]
    seen: set[str] = set()
    for i, rule in enumerate(parsed):
        if rule.id in seen:
            raise RuleError(f"rules[{i}] (id {rule.id!r}).id", "another rule has this id")
        seen.add(rule.id)
    return parsed


def page_category(options: ListingOptions) -> tuple[str, ...] | None:
    """The category a request lists (its filter's top-level ``category``, one path): a category page."""
    value = options.given.get("filter", {}).get("category") if isinstance(options.given.get("filter"), dict) else None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return tuple(category_levels(value)) if isinstance(value, str) else None


class RuleBook:
    """The rules in force: the document ``source`` returns (None: unchanged or unreadable), read again every
    ``POLL_S``. A document that does not parse is logged once and the rules before it stay."""

    def __init__(self, source: Callable[[], str | None], catalog: Catalog, clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.catalog = catalog
        self.clock = clock
        self.rules: list[Rule] = []
        self.text: str | None = None
        self.polled = -math.inf

    def current(self) -> list[Rule]:
        now = self.clock()
        if now - self.polled >= POLL_S:
            self.polled = now
            text = self.source()
            if text is not None and text != self.text:
                self.text = text
                try:
                    self.rules = parse_rules(text, self.catalog) if text.strip() else []
                except InvalidInput as err:
                    logger.warning(f"merchandising rules not applied, the previous ones stay: {err}")
        return self.rules

    def effects(
        self, view: ItemView, query: str | None, options: ListingOptions, now: float | None = None
    ) -> Effects | None:
        """The rules' effects on a request's candidates (``view``), or None when no rule applies."""
        rules = self.current()
        if not rules:
            return None
        when = time.time() if now is None else now
        category = page_category(options)
        n = len(view.rows)
        out = Effects(np.zeros(n, bool), np.zeros(n, np.float32), np.full(n, -1, np.int32))
        for rule in rules:
            if not rule.active(when, query, category):
                continue
            hit = rule.targets(self.catalog, view)
            if not hit.any():
                continue
            out.applied.append(rule.id)
            if rule.kind == "hide":
                out.hidden |= hit
            elif rule.kind == "boost":
                out.boosts[hit] += rule.weight
            else:
                out.pins[hit] = rule.position
        return out if out.applied else None

    def pinned_ids(self, query: str | None, options: ListingOptions, now: float | None = None) -> Array:
        """The items pinned for this request (retrieval fetches them ahead of the nearest ones)."""
        when = time.time() if now is None else now
        category = page_category(options)
        pins = [r.items for r in self.current() if r.kind == "pin" and r.active(when, query, category)]
        return np.concatenate(pins) if pins else np.zeros(0, np.int64)
