"""The BM25 side of benchmarks/lexical.py: query classes, the index, and the rank fusion."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.lexical import Lexical, paired_interval, query_class, rrf, words

pytestmark = pytest.mark.unit

TEXTS = [
    "Helix Max 1 black Running Shoes Helix Shoes Running Shoes",
    "Granite Lite 9 portable Blender Granite Home Blender",
    "Galen Mini 4 purple Yoga Mat Galen Sports Yoga Mat",
]


def test_queries_are_classed_by_brand_and_by_vocabulary():
    vocabulary = set().union(*(words(t) for t in TEXTS))
    brands = {"helix", "granite", "galen"}
    assert query_class("helix red running shoes", brands, vocabulary) == "brand"
    assert query_class("laufschuhe", brands, vocabulary) == "vocabulary mismatch"
    assert query_class("yoga mat", brands, vocabulary) == "other"


def test_bm25_finds_the_items_that_share_the_query_words_and_nothing_for_unknown_words():
    lexical = Lexical(TEXTS)
    assert lexical.search("portable blender", 3).tolist() == [1]
    assert lexical.search("galen yoga", 3)[0] == 2
    assert lexical.search("laufschuhe", 3).size == 0


def test_rank_fusion_puts_the_rows_both_lists_rank_high_first():
    fused = rrf(np.array([5, 1, 2]), np.array([1, 7, 5]))
    assert fused.tolist()[:2] == [1, 5] and set(fused.tolist()) == {1, 2, 5, 7}


def test_the_paired_interval_contains_zero_only_when_the_difference_is_noise():
    rng = np.random.default_rng(0)
    assert paired_interval(rng.normal(0.5, 0.1, 200))[1] > 0
    mean, low, high = paired_interval(rng.normal(0.0, 0.1, 200))
    assert low < 0 < high and low <= mean <= high
