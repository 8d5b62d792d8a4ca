"""The shop's lexicon: its category paths, brands and attribute values, found as phrases in a query.

The build writes it (``builders/learning/feature_tables.py``); the feature models read what a query
names (``Lexicon.parse``) for the query-match features.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

LEXICON_FILE = "lexicon.json"

_WORD = re.compile(r"\w[\w\-]*")

CATEGORY_SEPARATOR = ">"  # category paths: "Shoes > Running Shoes"
UNNAMED = "attribute"  # the name an attribute without "name:" is filtered and counted under
ATTRIBUTE_SPLIT = ":"  # attributes like "colour:black", "size:M"


def attribute_parts(attribute: str) -> tuple[str, str]:
    """``"colour:black"`` -> ``("colour", "black")``; ``"waterproof"`` -> ``("attribute", "waterproof")``.
    Names and values are compared lower-cased, with surrounding blanks removed."""
    name, sep, value = attribute.partition(ATTRIBUTE_SPLIT)
    if not sep or not name.strip() or not value.strip():
        return UNNAMED, attribute.strip().lower()
    return name.strip().lower(), value.strip().lower()


@dataclass(frozen=True)
class QueryIntent:
    """What query understanding found in a query: indices into the lexicon, -1 = none."""

    category: int = -1
    brand: int = -1
    attribute: int = -1


def words(text: str) -> str:
    """Lower-cased words (any script; hyphens kept inside a word) joined by single spaces."""
    return " ".join(_WORD.findall(text.lower()))


def category_phrase(category: str) -> str:
    """The phrase a query names a category by: the last segment of a path ('Shoes > Running' -> 'running')."""
    return words(category.split(CATEGORY_SEPARATOR)[-1])


class Lexicon:
    """The catalogue's own vocabulary (categories, brands, attributes), learned at build time.

    ``parse`` finds whole-word phrases of that vocabulary in a query, longest phrase first. It
    understands only the catalogue's words: a query that says "shoes for jogging" where the
    catalogue says "Running Shoes" finds no category, and the text encoder's similarity is what
    ranks it (docs/quality.md measures both).
    """

    def __init__(self, categories: list[str], brands: list[str], attributes: list[str]):
        self.categories = categories
        self.brands = brands
        self.attributes = attributes
        self._cats = self._phrases(category_phrase(c) for c in categories)
        self._brands = self._phrases(words(b) for b in brands)
        self._attrs = self._phrases(words(attribute_parts(a)[1]) for a in attributes)  # "colour:black": "black"

    @staticmethod
    def _phrases(phrases: Iterable[str]) -> list[tuple[str, int]]:
        # Longest first, so "running shoes" wins over a shorter phrase inside it; padded for whole words.
        found = [(f" {p} ", i) for i, p in enumerate(phrases) if p]
        return sorted(found, key=lambda x: -len(x[0]))

    def to_json(self) -> str:
        return json.dumps({"categories": self.categories, "brands": self.brands, "attributes": self.attributes})

    @classmethod
    def from_json(cls, text: str) -> Lexicon:
        return cls(**json.loads(text))

    def parse(self, query: str) -> QueryIntent:
        text = f" {words(query)} "

        def find(phrases: list[tuple[str, int]]) -> int:
            return next((i for p, i in phrases if p in text), -1)

        return QueryIntent(find(self._cats), find(self._brands), find(self._attrs))
