"""The co-visitation tables: built from sessions (builders/learning/covisit.py) and read for retrieval and the
ranker's features (runtime/covisit.py)."""

import numpy as np
import pytest

from builders.data.config import CovisitConfig
from builders.data.dataset import ShopData
from builders.learning import covisit as build_cv
from runtime.covisit import RECENT_CONTEXT, CoVisits, context_rows, context_vector

pytestmark = pytest.mark.unit
N_ITEMS = 8


def shop(lists, stats_lists: int | None = None) -> ShopData:
    """``lists``: (session, time, context item row or -1, [(item row, click, purchase)]), in time order."""
    imp = [r for *_, rows in lists for r in rows]
    offsets = np.cumsum([0] + [len(rows) for *_, rows in lists])
    n = len(lists)
    return ShopData(
        name="t",
        id_kinds={"item": "int64", "user": "int64"},
        item_ids=np.arange(100, 100 + N_ITEMS),
        item_keys=None,
        item_titles=[f"t{i}" for i in range(N_ITEMS)],
        item_category=np.zeros(N_ITEMS, np.int64),
        item_brand=np.zeros(N_ITEMS, np.int64),
        item_attrs=np.full((N_ITEMS, 1), -1),
        item_price=np.ones(N_ITEMS, np.float32),
        item_stock=np.ones(N_ITEMS, np.int64),
        categories=["c"],
        brands=["b"],
        attributes=[],
        user_ids=np.zeros(0, np.int64),
        user_segment=np.zeros(0, np.int64),
        segments=[],
        queries=[],
        session_user=np.full(n, -1),
        session_time=np.array([t for _, t, _, _ in lists], np.int64),
        session_query=np.full(n, -1),
        session_offsets=offsets.astype(np.int64),
        imp_item=np.array([r[0] for r in imp]),
        imp_position=np.zeros(len(imp), np.int64),
        imp_click=np.array([r[1] for r in imp], np.int8),
        imp_purchase=np.array([r[2] for r in imp], np.int8),
        cuts={
            "stats": 10**9 if stats_lists is None else lists[stats_lists][1],
            "train": 10**9 + 1,
            "validation": 10**9 + 2,
        },
        session_context=np.array([ctx for _, _, ctx, _ in lists], np.int64),
        session_group=np.array([g for g, _, _, _ in lists], np.int64),
    )


def weight(tables: CoVisits, a: int, b: int) -> float:
    return float(tables.pair_weights(np.array([[a]]), np.array([b]))[0, 0])


def test_pairs_within_a_session_weighted_by_kind_direction_and_time():
    s = shop(
        [
            (0, 0, -1, [(0, 1, 0), (5, 0, 0)]),  # session 0: clicks item 0 ...
            (0, 100, 0, [(1, 1, 1), (2, 0, 0)]),  # ... views its page (context 0) and buys item 1 there
            (1, 200, -1, [(3, 1, 0)]),  # session 1: item 3 alone, never paired with session 0's items
            (0, 200 + 7200, -1, [(4, 1, 0)]),  # session 0 again, two hours later: item 4, weakly paired
        ]
    )
    cfg = CovisitConfig(smoothing=0.0, decay_s=3600.0)
    tables, report = build_cv.build(s, cfg)
    assert report["sessions"] == 2 and report["interactions"] == 4  # the page's item is item 0's click, once
    own = {0: 1.0, 1: 3.0, 4: 1.0}  # the purchase counts 3
    forward = 3.0 * np.exp(-100 / 3600) / np.sqrt(own[0] * own[1])  # 1 after 0: the later one's kind
    assert weight(tables, 0, 1) == pytest.approx(forward, rel=1e-5)
    assert weight(tables, 1, 0) == pytest.approx(0.5 * 1.0 * np.exp(-100 / 3600) / np.sqrt(3.0), rel=1e-5)
    assert weight(tables, 0, 3) == 0 and weight(tables, 3, 0) == 0  # another session
    assert 0 < weight(tables, 0, 4) < 0.2 * weight(tables, 0, 1)  # hours apart: decayed
    assert weight(tables, 0, 0) == 0 and weight(tables, 0, 2) == 0  # an item with itself; an unclicked one


def test_the_normalisation_keeps_a_popular_item_from_following_everything():
    """Item 7 is in every session; item 1 follows item 0 in three. By raw counts 7 follows 0 most; normalised
    by the items' own weights, 1 does."""
    lists = []
    for g in range(12):
        rows = [(7, 1, 0)] + ([(0, 1, 0), (1, 1, 0)] if g < 3 else [(2 + g % 4, 1, 0)])
        lists.append((g, g * 10, -1, rows))
    tables, _ = build_cv.build(shop(lists), CovisitConfig(smoothing=1.0))
    rows, _ = tables.neighbours(np.array([0]))
    assert rows[0] == 1 and 7 in rows.tolist()
    raw = {1: 3, 7: 3}  # the raw pair counts tie; item 7's own weight is 12
    assert weight(tables, 0, 1) > weight(tables, 0, 7) and raw[1] == raw[7]


def test_passes_and_chunks_give_the_tables_of_one(monkeypatch):
    rng = np.random.default_rng(3)
    lists = []
    for g in range(60):
        for k in range(rng.integers(1, 4)):
            rows = [(int(i), int(rng.random() < 0.6), int(rng.random() < 0.1)) for i in rng.choice(N_ITEMS, 3, False)]
            ctx = int(rows[0][0]) if k else -1
            lists.append((g, g * 1000 + k * 60, ctx, rows))
    s = shop(lists)
    one, _ = build_cv.build(s, CovisitConfig(top=3))
    monkeypatch.setattr(build_cv, "PASS_PAIRS", 10)
    monkeypatch.setattr(build_cv, "CHUNK_EVENTS", 7)
    many, report = build_cv.build(s, CovisitConfig(top=3))
    assert report["passes"] > 1
    np.testing.assert_array_equal(one.keys, many.keys)
    np.testing.assert_allclose(one.weights, many.weights, rtol=1e-6)
    np.testing.assert_array_equal(one.offsets, many.offsets)
    assert np.diff(one.offsets).max() <= 3  # top 3 per item


def test_the_category_table_says_where_a_category_leads():
    """Items of category 0 are followed by items of category 1 in many sessions, each pair of items once:
    the item pairs are sparse, the category table is not."""
    lists = [(g, g * 10, -1, [(g % 4, 1, 0), (4 + g % 4, 1, 0)]) for g in range(16)]
    s = shop(lists)
    s.item_category = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s.categories = ["laptops", "backpacks"]
    tables, _ = build_cv.build(s, CovisitConfig(smoothing=0.0))
    laptops_to_backpacks, backpacks_to_laptops = tables.categories[1, 2], tables.categories[2, 1]
    assert laptops_to_backpacks > backpacks_to_laptops > 0  # what follows counts more than what precedes
    assert tables.categories[1, 1] == 0 and tables.categories[0].sum() == 0


def test_the_statistics_window_bounds_what_is_counted():
    s = shop([(0, 0, -1, [(0, 1, 0), (1, 1, 0)]), (1, 500, -1, [(2, 1, 0), (3, 1, 0)])], stats_lists=1)
    tables, _ = build_cv.build(s, CovisitConfig())
    assert weight(tables, 0, 1) > 0 and weight(tables, 2, 3) == 0


def test_features_and_neighbours_read_the_pairs():
    categories = np.zeros((3, 3), np.float32)  # none, category 0, category 1
    categories[1, 2] = 0.4  # category 0 leads to category 1
    tables = CoVisits.from_pairs(np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([0.5, 0.25, 1.0]), 4, 2, categories)
    rows, scores = tables.neighbours(np.array([0, 1, -1]), np.array([1.0, 0.5, 1.0]))
    assert rows.tolist() == [2, 1] and scores.tolist() == pytest.approx([0.75, 0.5])
    emb = np.eye(5, 3, dtype=np.float32)  # rows 0..2 one-hot, row 3 and the unknown row zeros
    item_category = np.array([0, 0, 1, 1, -1])  # the tables' last row: the unknown item
    context = np.array([[0, 1], [0, -1], [-1, -1]])
    # row 0: item 0 viewed, item 1 a recent click; row 1: item 0 a recent click; row 2: no context
    f = tables.features(context, np.array([2, 1, 2]), emb, item_category, np.array([1, 0, 0]))
    assert f[0].tolist() == pytest.approx([np.log1p(1.25), np.log1p(1.0), 0.0, 1.0, 0.0, 0.4, 0.0, 0.4])
    assert f[1].tolist() == pytest.approx([np.log1p(0.5), np.log1p(0.5), 0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert f[2].tolist() == [0] * 8  # no context: nothing
    same = tables.features(np.array([[2, 0]]), np.array([3]), emb, item_category)
    assert same[0, 2] == pytest.approx(0.0) and same[0, 6] == pytest.approx(0.5)  # half the recent in its category
    assert tables.features(np.array([[2]]), np.array([2]), emb, item_category)[0, 2] == pytest.approx(1.0)


def test_context_rows_put_the_viewed_items_first_and_keep_the_newest_recent_ones():
    rows = context_rows(np.array([5, -1]), np.array([3, 5, 3, -1, 9, 8, 7, 6, 4, 2]))
    assert rows.tolist()[: 1 + RECENT_CONTEXT] == [5, 3, 9, 8, 7, 6]  # each once, unknown ones left out
    assert (rows[1 + RECENT_CONTEXT :] == -1).all()
    assert (context_rows(np.zeros(0), np.zeros(0)) == -1).all()


def test_context_vector_follows_the_viewed_item_and_stands_in_for_a_missing_profile():
    emb = np.array([[1, 0], [0, 1], [0, 0]], np.float32)
    profile = np.array([2, 0], np.float32)
    assert context_vector(profile, np.array([1, -1]), emb, viewed=True).tolist() == pytest.approx([0, 1])
    assert context_vector(profile, np.array([1, -1]), emb).tolist() == pytest.approx([1, 0])  # the profile
    assert context_vector(np.zeros(2, np.float32), np.array([1]), emb).tolist() == pytest.approx([0, 1])
    assert context_vector(np.zeros(2, np.float32), np.array([-1]), emb).tolist() == [0, 0]
