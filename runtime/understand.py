"""Structured query understanding: the words of a query that name a catalogue value become constraints.

``understand("black dress under 50", catalog)`` finds:

* a price bound: "under 50", "below 50", "less than 50", "up to 50", "max 50", "over 20", "above 20",
  "from 20", "between 20 and 50" (a currency sign or code around the number is allowed);
* a category by the last segment of its path, singular or plural ("dress" -> ``Women > Dresses``; every
  category whose path ends so: "coat" -> ``Women > Coats`` and ``Men > Coats``);
* a brand the catalogue has, as a whole phrase ("maison pell");
* a value of a named attribute the catalogue has ("black" -> ``colour: black``), whole words, values of at
  least three letters (so "m" or "38" in a query is not read as a size).

Each becomes a *chip*: what the page shows as a removable filter (``{"field": "colour", "value": "black",
"text": "black", "applied": true}``). The applied chips form a filter tree (``runtime/options.py``): by
default (``DEFAULT_FIELDS``) price bounds and attribute values; brand and category chips are reported, not
applied, unless the request's ``understand_fields`` names them. How they apply is the request's
``understand`` option: ``filter`` (the default, chosen by measurement: docs/quality.md) keeps only the items
that match, falling back to the plain query when fewer than ``MIN_MATCHES`` of the retrieved candidates
match; ``boost`` ranks the matching ones ``BOOST`` higher; ``off`` ignores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runtime.catalog import Catalog
from runtime.lexicon import CATEGORY_SEPARATOR, UNNAMED, words
from runtime.options import DEFAULT_MODE, DEFAULT_UNDERSTOOD_FIELDS, MODES

__all__ = ["DEFAULT_MODE", "MODES", "NOTHING", "QueryUnderstanding", "Understood"]

MIN_MATCHES = 10  # fewer matching candidates than this: the understood constraints are dropped (relaxed)
BOOST = 1.0  # boost mode: added to the final score of a candidate that matches every chip
MIN_VALUE_LETTERS = 3
# applied by default: price bounds and named attribute values. Brand and category chips are only reported: as
# filters they lost NDCG@10 on the demo shop's searches, whose shoppers click other brands and categories
# (docs/quality.md, `make bench-listing`)
DEFAULT_FIELDS = DEFAULT_UNDERSTOOD_FIELDS

_NUMBER = r"(?:[$€£]\s*)?(\d+(?:[.,]\d+)?)\s*(?:[$€£]|eur|euro|euros|usd|gbp|dollars?|pounds?)?"
_BETWEEN = re.compile(rf"\bbetween\s+{_NUMBER}\s+(?:and|-)\s+{_NUMBER}")
_BELOW = re.compile(rf"\b(?:under|below|less than|cheaper than|up to|max|maximum|<)\s*{_NUMBER}")
_ABOVE = re.compile(rf"\b(?:over|above|more than|from|min|minimum|>)\s*{_NUMBER}")


@dataclass(frozen=True)
class Understood:
    """The chips found in a query, and how they are applied (``mode``; ``relaxed``: dropped, too few matched)."""

    chips: tuple[dict[str, Any], ...] = ()
    mode: str = "off"
    relaxed: bool = False
    tree: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"chips": list(self.chips), "mode": self.mode, "relaxed": self.relaxed, "tree": self.tree}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Understood:
        if not raw:
            return NOTHING
        return cls(tuple(raw["chips"]), raw["mode"], bool(raw["relaxed"]), raw["tree"])


NOTHING = Understood()


def _amount(text: str) -> float:
    return float(text.replace(",", "."))


def stem(word: str) -> str:
    """A plural's singular, roughly: "dresses" -> "dress", "coats" -> "coat", "shoes" -> "shoe"."""
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def stems(text: str) -> str:
    return " ".join(stem(w) for w in words(text).split())


def _phrases(values: list[str]) -> list[tuple[str, str]]:
    """(padded phrase, value) pairs, longest first, for whole-word matching in a padded query."""
    found = [(f" {words(v)} ", v) for v in values if sum(ch.isalpha() for ch in v) >= MIN_VALUE_LETTERS]
    return sorted(found, key=lambda x: -len(x[0]))


class QueryUnderstanding:
    """The catalogue's brands and named attribute values, indexed once per model instance."""

    def __init__(self, catalog: Catalog):
        by_phrase: dict[str, list[str]] = {}
        for path in catalog.vocabulary.categories:
            last = path.split(CATEGORY_SEPARATOR)[-1]
            if sum(ch.isalpha() for ch in last) >= MIN_VALUE_LETTERS:
                by_phrase.setdefault(f" {stems(last)} ", []).append(path)
        self.categories = sorted(by_phrase.items(), key=lambda x: -len(x[0]))
        self.brands = _phrases(catalog.vocabulary.brands)
        by_name: dict[str, list[str]] = {}
        for name, value in zip(catalog.attribute_names.tolist(), catalog.attribute_values.tolist(), strict=True):
            if name != UNNAMED:
                by_name.setdefault(name, []).append(value)
        self.attributes = {name: _phrases(sorted(set(values))) for name, values in sorted(by_name.items())}

    def __call__(self, query: str, mode: str = DEFAULT_MODE, fields: tuple[str, ...] = DEFAULT_FIELDS) -> Understood:
        """The chips of ``query``; those of the kinds in ``fields`` (price, attribute, brand, category) are
        applied (``"applied": true``, in the tree), the others only reported."""
        if mode == "off":
            return NOTHING
        text = query.lower()
        chips: list[dict[str, Any]] = []
        price: dict[str, float] = {}
        between = _BETWEEN.search(text)
        if between:
            low, high = sorted((_amount(between.group(1)), _amount(between.group(2))))
            if low < high:
                price = {"min": low, "max": high}
                chips.append({"field": "price", "min": low, "max": high, "text": between.group(0).strip()})
        else:
            for pattern, bound in ((_BELOW, "max"), (_ABOVE, "min")):
                hit = pattern.search(text)
                if hit and _amount(hit.group(1)) > 0:
                    price[bound] = _amount(hit.group(1))
                    chips.append({"field": "price", bound: price[bound], "text": hit.group(0).strip()})
        if "min" in price and "max" in price and price["min"] >= price["max"]:
            price, chips = {}, [c for c in chips if c["field"] != "price"]
        padded = f" {words(text)} "
        category = next(((p, v) for p, v in self.categories if p in f" {stems(text)} "), None)
        if category:
            said = words(category[1][0].split(CATEGORY_SEPARATOR)[-1])
            chips.append({"field": "category", "value": category[1], "text": said})
        brand = next(((p, v) for p, v in self.brands if p in padded), None)
        if brand:
            chips.append({"field": "brand", "value": brand[1], "text": brand[0].strip()})
        for name, phrases in self.attributes.items():
            hit_value = next(((p, v) for p, v in phrases if p in padded), None)
            if hit_value:
                chips.append({"field": name, "value": hit_value[1], "text": hit_value[0].strip(), "kind": "attribute"})
        if not chips:
            return NOTHING
        tree: dict[str, Any] = {}  # applied chips only; none applied: reported, nothing filtered or boosted
        for chip in chips:
            chip["applied"] = chip.pop("kind", chip["field"]) in fields
            if chip["applied"]:
                tree[chip["field"]] = price if chip["field"] == "price" else chip["value"]
        return Understood(tuple(chips), mode, False, tree)
