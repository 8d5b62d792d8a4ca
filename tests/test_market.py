"""The second generated shop (``builders/data/market.py``): hard in the ways real shops are, deterministic,
and read through the data contract like any shop's export."""

from __future__ import annotations

import collections
from dataclasses import replace

import numpy as np
import pytest

from builders.data import config as cfg_mod
from builders.data import market
from builders.data.dataset import load_shop

pytestmark = pytest.mark.unit
TINY = replace(market.PROFILES["market-small"], n_items=600, n_users=200, n_sessions=1500)


@pytest.fixture(scope="module")
def tables():
    return market.generate(market.PROFILES["market-small"])


def test_no_query_shares_a_word_with_any_title(tables):
    vocab = market.vocabulary(tables["products"]["name"].to_pylist())
    queries = {q for q in tables["clickstream"]["query"].to_pylist() if q is not None}
    assert len(queries) > 300
    assert not [q for q in queries if market.shares_words(q, vocab)]
    assert {"hygge", "wachmacher", "whodunit", "calming hot drink"} <= queries


def test_titles_in_four_languages_and_string_ids_with_leading_zeros(tables):
    names = " ".join(tables["products"]["name"].to_pylist())
    for word in ("Kaffeebohnen", "Café", "Caffè", "Coffee"):
        assert word in names
    eans = tables["products"]["ean"].to_pylist()
    assert all(e.startswith("0") and len(e) == 13 for e in eans) and len(set(eans)) == len(eans)


def test_a_head_of_frequent_queries_and_a_long_tail(tables):
    ev = tables["clickstream"]
    lists = {(s, q) for s, q in zip(ev["session_id"].to_pylist(), ev["query"].to_pylist(), strict=True) if q}
    typed = collections.Counter(q for _, q in lists)
    assert typed.most_common(1)[0][1] >= 200  # a head query typed hundreds of times
    singletons = sum(1 for n in typed.values() if n == 1)
    assert singletons >= 0.4 * len(typed)  # most distinct queries are typed once
    assert set(ev["action"].to_pylist()) == {"impression", "click", "add_to_cart", "purchase"}


def test_an_intent_serves_several_categories_and_only_some_of_their_items():
    world = market._catalogue(TINY, np.random.default_rng(0))
    hygge = next(j for j, (texts, _, _) in enumerate(market.INTENTS) if "hygge" in texts)
    cats = set(market.INTENTS[hygge][1])
    suited = world["suits"][:, hygge]
    assert len(cats) == 3 and set(world["cat"][suited]) <= cats
    inside = np.isin(world["cat"], list(cats))
    assert 0.2 < suited[inside].mean() < 0.8  # within the categories, the hidden tag decides


def test_generation_is_deterministic():
    a, b = market.generate(TINY), market.generate(TINY)
    assert all(a[k].equals(b[k]) for k in a)


def test_read_through_the_contract_like_any_shop(tmp_path):
    config = market.write("market-small", tmp_path)
    cfg = cfg_mod.load(config)
    shop, report = load_shop(cfg)
    assert shop.id_kinds["item"] == "string" and shop.item_keys[0].startswith("0")
    assert report.summary["anonymous_lists"] > 0.2 * report.summary["lists"]
    assert shop.imp_relevance is not None and len(shop.categories) == len(market.CATEGORIES)
