import numpy as np
import pytest

from builders.data.shop import (
    CATEGORIES,
    COMPLEMENTS,
    MISMATCH_SHARE,
    PROFILES,
    RANDOM_SHARE,
    LoggingPolicy,
    ShopProfile,
    generate,
    true_relevance,
)

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
    first = shop.session_depth == 0  # the lists a visit begins with (product pages follow them)
    assert len(shop.session_user[first]) == TINY.n_sessions
    home = (shop.session_query[first] < 0).mean()
    assert 0.1 < home < 0.3
    assert (shop.session_query[shop.session_context >= 0] == -1).all()  # a product page has no query


def test_product_pages_follow_a_click_and_their_truth_follows_the_intent(shop):
    """A page is opened from an item clicked in the list before it, in the same visit; it never shows the
    viewed item; its clicks go to the viewed item's category or to a complementary one far more often
    than the page's other items would get them."""
    pages = np.flatnonzero(shop.session_context >= 0)
    assert 0.2 < len(pages) / len(shop.session_user) < 0.6
    assert (shop.session_depth[pages] >= 1).all() and (shop.session_depth[pages] <= 2).any()
    lengths = np.diff(shop.session_offsets)
    list_of = np.repeat(np.arange(len(lengths)), lengths)
    nouns = [c[0] for c in CATEGORIES]
    comp = {c: {nouns.index(x) for x in COMPLEMENTS[n]} for c, n in enumerate(nouns)}
    followed, shown_followed = [], []
    for s in pages[:300]:
        a, b = shop.session_offsets[s], shop.session_offsets[s + 1]
        viewed = shop.session_context[s]
        assert viewed not in shop.imp_item[a:b]
        root = shop.session_root[s]
        parent_lists = np.flatnonzero((shop.session_root == root) & (shop.session_depth == shop.session_depth[s] - 1))
        parents_clicked = {
            int(shop.imp_item[i]) for i in np.flatnonzero(np.isin(list_of, parent_lists) & (shop.imp_click > 0))
        }
        assert int(viewed) in parents_clicked
        vc = shop.item_category[viewed]
        near = np.array([c == vc or c in comp[vc] for c in shop.item_category[shop.imp_item[a:b]]])
        followed += list(near[shop.imp_click[a:b] > 0])
        shown_followed += list(near)
    assert np.mean(followed) > np.mean(shown_followed) + 0.1


def test_a_third_of_searches_phrase_the_need_without_the_catalogue_words(shop):
    searches = shop.session_query[shop.session_query >= 0]
    share = shop.query_mismatch[searches].mean()
    assert share >= 1 / 3 - 0.03 and abs(share - MISMATCH_SHARE) < 0.05
    titles = " ".join(shop.item_titles).lower()
    for q in np.flatnonzero(shop.query_mismatch):
        noun = next(c[0] for i, c in enumerate(CATEGORIES) if i == shop.query_category[q])
        assert noun not in shop.queries[q], shop.queries[q]
    assert "running shoes" in titles


def test_mismatch_queries_keep_the_shoppers_intent_in_the_hidden_relevance(shop):
    """Two searches with the same intent, one in catalogue words and one not, share their relevance."""

    world = {
        k: getattr(shop, k)
        for k in (
            "item_category",
            "item_brand",
            "item_attrs",
            "item_price",
            "item_stock",
            "item_quality",
            "item_popularity",
            "user_cat_pref",
            "user_fav_brands",
            "user_price_sens",
        )
    }
    cat = int(shop.query_category[np.flatnonzero(shop.query_mismatch)[0]])
    items = np.arange(50)
    users = np.zeros(50, np.int64)
    q = np.full(50, cat)
    none = np.full(50, -1)
    rel = true_relevance(world, users, items, q, none, none)
    in_cat = shop.item_category[items] == cat
    if in_cat.any() and (~in_cat).any():
        assert rel[in_cat].mean() > rel[~in_cat].mean()


def test_default_profile_meets_the_required_size():
    p = PROFILES["default"]
    assert p.n_items >= 50_000
    assert p.n_sessions * (p.min_candidates + p.max_candidates) / 2 >= 1_000_000


def test_the_logging_rankers_change_over_time_and_keep_a_randomised_slice():

    policy = LoggingPolicy(seed=3, n_items=50, switch_day=10)
    items = np.arange(50)
    scores = -np.arange(50, dtype=float)  # popularity order: 0, 1, 2, ...
    before = [policy.order(scores, items, day=0) for _ in range(2000)]
    after = [policy.order(scores, items, day=10) for _ in range(2000)]
    shuffled = [not np.array_equal(o, items) for o in before]
    assert abs(np.mean(shuffled) - RANDOM_SHARE) < 0.015  # the randomised slice, and otherwise the first ranker
    reranked = [o for o in after if not np.array_equal(o, items)]
    assert len(reranked) == len(after)  # the boost re-ranks every list from the switch day on
    boosted = np.argsort(-(scores + policy.boost))
    assert np.mean([np.array_equal(o, boosted) for o in after]) > 1 - 2 * RANDOM_SHARE


def test_one_item_is_logged_at_many_positions(shop):
    top = np.bincount(shop.imp_item).argmax()
    assert len(np.unique(shop.imp_position[shop.imp_item == top])) >= 5
