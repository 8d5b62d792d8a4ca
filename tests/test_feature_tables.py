import numpy as np
import pytest

from builders.data.dataset import impressions_of
from builders.data.shop import ShopProfile, generate
from builders.learning.feature_tables import build_lexicon, build_tables, build_user_profiles, stats_sessions
from tests.helpers import shop_data

pytestmark = pytest.mark.unit
TINY = ShopProfile("tiny", n_items=300, n_users=80, n_sessions=500, min_candidates=8, max_candidates=16)


@pytest.fixture(scope="module")
def raw():
    return generate(TINY)


@pytest.fixture(scope="module")
def shop(raw, tmp_path_factory):
    return shop_data(raw, tmp_path_factory.mktemp("tiny"))


def test_tables_have_a_default_last_row_and_round_trip_lookups(shop):
    t = build_tables(shop)
    assert len(t.item_category) == len(shop.item_ids) + 1 and t.item_category[-1] == -1
    assert len(t.user_segment) == len(shop.user_ids) + 1 and t.user_segment[-1] == -1
    rows = t.item_rows(shop.item_ids)
    np.testing.assert_array_equal(rows, np.arange(len(shop.item_ids)))
    np.testing.assert_array_equal(t.user_rows(shop.user_ids), np.arange(len(shop.user_ids)))
    assert t.user_cat_aff.shape == (len(shop.user_ids) + 1, len(shop.categories) + 1)


def test_ctr_is_smoothed_into_zero_one_and_affinities_are_shares(shop):
    t = build_tables(shop)
    assert np.all((t.item_ctr > 0) & (t.item_ctr < 1))
    np.testing.assert_allclose(t.user_cat_aff[:-1, :-1].sum(1), 1.0, atol=1e-5)


def test_statistics_only_see_the_stats_window(shop):
    """Changing clicks after the stats window must not change any table."""
    before = build_tables(shop)
    later = np.setdiff1d(np.arange(len(shop.session_user)), stats_sessions(shop))
    imp = impressions_of(shop, later)
    shop.imp_click[imp] = 1 - shop.imp_click[imp]
    try:
        after = build_tables(shop)
    finally:
        shop.imp_click[imp] = 1 - shop.imp_click[imp]
    for key, value in before.arrays.items():
        np.testing.assert_array_equal(value, after.arrays[key], err_msg=key)


def test_user_profiles_are_unit_or_zero(shop):
    emb = np.random.default_rng(0).normal(size=(len(shop.item_ids) + 1, 8)).astype(np.float32)
    prof = build_user_profiles(shop, emb)
    norms = np.linalg.norm(prof, axis=1)
    assert prof.shape == (len(shop.user_ids) + 1, 8) and norms[-1] == 0
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))


def test_lexicon_learned_from_the_catalogue_parses_catalogue_queries_not_mismatch_ones(raw, shop):
    """The vocabulary comes from the data: every query built from the catalogue's words finds its
    category; none of the vocabulary-mismatch queries (synonyms, typos, other languages) does."""
    lex = build_lexicon(shop)
    phrase = {i: c.split(">")[-1].strip().lower() for i, c in enumerate(shop.categories)}
    for q, text in enumerate(raw.queries):
        found = lex.parse(text).category
        if raw.query_mismatch[q]:
            assert found == -1, text
        else:
            assert found >= 0 and phrase[found] in text, text
