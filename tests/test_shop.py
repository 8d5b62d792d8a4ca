import numpy as np
import pytest

from builders.shop import PROFILES, ShopProfile, generate, impressions_of, split_by_time

pytestmark = pytest.mark.unit
TINY = ShopProfile("tiny", n_items=400, n_users=100, n_sessions=600, min_candidates=8, max_candidates=20)


@pytest.fixture(scope="module")
def shop():
    return generate(TINY)


def test_same_profile_gives_the_same_shop(shop):
    again = generate(TINY)
    for name in ("item_ids", "item_price", "imp_item", "imp_click", "imp_purchase", "session_query"):
        np.testing.assert_array_equal(getattr(shop, name), getattr(again, name))
    assert shop.item_titles == again.item_titles


def test_another_seed_gives_another_shop(shop):
    other = generate(ShopProfile(**{**TINY.__dict__, "seed": 1}))
    assert not np.array_equal(shop.imp_click, other.imp_click)


def test_sizes_and_ids(shop):
    assert len(shop.item_ids) == TINY.n_items and len(np.unique(shop.item_ids)) == TINY.n_items
    assert len(np.unique(shop.user_ids)) == TINY.n_users
    lengths = np.diff(shop.session_offsets)
    assert lengths.min() >= 1 and lengths.max() <= TINY.max_candidates
    assert shop.n_impressions == lengths.sum()
    assert all(t.strip() == t and len(t.split()) >= 3 for t in shop.item_titles)


def test_purchases_only_after_clicks_and_never_out_of_stock(shop):
    assert np.all(shop.imp_purchase <= shop.imp_click)
    assert not np.any(shop.imp_purchase[shop.item_stock[shop.imp_item] == 0])


def test_position_bias_lowers_click_rate_down_the_list(shop):
    top = shop.imp_click[shop.imp_position < 3].mean()
    low = shop.imp_click[shop.imp_position >= 10].mean()
    assert top > 2 * low


def test_clicks_follow_hidden_relevance(shop):
    rel = shop.imp_relevance
    assert shop.imp_click[rel > np.quantile(rel, 0.8)].mean() > shop.imp_click[rel < np.quantile(rel, 0.2)].mean()


def test_homepage_sessions_have_no_query_and_share_is_near_profile(shop):
    home = (shop.session_query < 0).mean()
    assert 0.1 < home < 0.3


def test_time_split_is_ordered_and_disjoint(shop):
    split = split_by_time(shop)
    assert sum(len(v) for v in split.values()) == len(shop.session_user)
    assert shop.session_day[split["train"]].max() < shop.session_day[split["val"]].min()
    assert shop.session_day[split["val"]].max() < shop.session_day[split["test"]].min()


def test_impressions_of_returns_exactly_the_sessions_rows(shop):
    sessions = np.array([3, 10, 11, 200])
    imp = impressions_of(shop, sessions)
    expected = np.concatenate([np.arange(shop.session_offsets[s], shop.session_offsets[s + 1]) for s in sessions])
    np.testing.assert_array_equal(imp, expected)


def test_default_profile_meets_the_required_size():
    p = PROFILES["default"]
    assert p.n_items >= 50_000
    assert p.n_sessions * (p.min_candidates + p.max_candidates) / 2 >= 1_000_000
