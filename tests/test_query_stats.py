"""The query behaviour statistics: normalisation, counting over the statistics window, smoothing, bounds,
and the features a candidate gets from them (known, tail and unknown queries)."""

from __future__ import annotations

import numpy as np
import pytest

from builders.data.config import QueryStatsConfig
from builders.data.dataset import ShopData
from builders.learning import query_stats as build_qs
from runtime.pages import is_mapped
from runtime.query_stats import CTR_PRIOR, QUERY_COLUMNS, SHARE_PRIOR, QueryStats, normalize, query_key

pytestmark = pytest.mark.unit
COL = {name: i for i, name in enumerate(QUERY_COLUMNS)}


def one(values: np.ndarray) -> np.ndarray:
    """One matched query per row: the ``[N, 1]`` shape of ``QueryStats.match``'s rows and weights."""
    return np.asarray(values)[:, None]


def embeddings(s: ShopData) -> np.ndarray:
    """A unit vector per raw query of ``s``: its own axis (no two queries alike)."""
    return np.eye(len(s.queries), 8, dtype=np.float32)


def test_normalize_folds_case_width_punctuation_and_space():
    assert normalize("  HYGGE!! ") == normalize("hygge") == "hygge"
    assert normalize("Ｗａｃｈｍａｃｈｅｒ") == "wachmacher"  # full-width letters (NFKC)
    assert normalize("Straße") == normalize("STRASSE")  # case folding, not lower()
    assert normalize("calming,  hot\tdrink?") == "calming hot drink"
    assert normalize("t-shirt") == "t shirt"
    assert query_key("hygge") == query_key(normalize("Hygge")) != query_key("hyggee")


def shop(lists: list[tuple[str | None, list[tuple[int, int, int]]]], stats_lists: int) -> ShopData:
    """A shop of 4 items (categories 0, 0, 1, 1; brands 0, 1, 0, 1) whose first ``stats_lists`` lists fall in
    the statistics window; each list is (query, [(item, click, purchase), ...])."""
    queries = sorted({q for q, _ in lists if q is not None})
    imp = [r for _, rows in lists for r in rows]
    offsets = np.cumsum([0] + [len(rows) for _, rows in lists])
    n = len(lists)
    return ShopData(
        name="t",
        id_kinds={"item": "int64", "user": "int64"},
        item_ids=np.arange(10, 14),
        item_keys=None,
        item_titles=["a", "b", "c", "d"],
        item_category=np.array([0, 0, 1, 1]),
        item_brand=np.array([0, 1, 0, 1]),
        item_attrs=np.full((4, 1), -1),
        item_price=np.ones(4, np.float32),
        item_stock=np.ones(4, np.int64),
        categories=["tea", "books"],
        brands=["x", "y"],
        attributes=[],
        user_ids=np.zeros(0, np.int64),
        user_segment=np.zeros(0, np.int64),
        segments=[],
        queries=queries,
        session_user=np.full(n, -1),
        session_time=np.arange(n, dtype=np.int64),
        session_query=np.array([queries.index(q) if q is not None else -1 for q, _ in lists]),
        session_offsets=offsets.astype(np.int64),
        imp_item=np.array([r[0] for r in imp]),
        imp_position=np.zeros(len(imp), np.int64),
        imp_click=np.array([r[1] for r in imp], np.int8),
        imp_purchase=np.array([r[2] for r in imp], np.int8),
        cuts={"stats": stats_lists, "train": n + 1, "validation": n + 2},
    )


def test_counts_smoothing_threshold_and_window():
    lists = [
        ("Calming Tea", [(0, 1, 1), (1, 0, 0), (2, 0, 0)]),  # a click and a purchase on item 0 (weight 2)
        ("calming tea!", [(0, 1, 0), (3, 0, 0)]),  # the same query after normalisation
        ("whodunit", [(2, 1, 0), (0, 0, 0)]),  # one list only: below min_lists
        (None, [(1, 1, 0)]),  # a homepage list: no query to count
        ("whodunit", [(2, 1, 0)]),  # after the statistics window: not counted
    ]
    s = shop(lists, stats_lists=4)
    stats, report = build_qs.build(s, QueryStatsConfig(min_lists=2), embeddings(s))
    assert report["kept_queries"] == 1 and report["normalized_queries"] == 2 and report["raw_queries"] == 3
    assert report["share_of_lists_covered"] == pytest.approx(2 / 3, abs=1e-4)
    q = stats.row("CALMING   tea")
    assert q == 0 and stats.row("whodunit") == -1 and stats.row("never typed") == -1
    window_ctr = 4 / 7  # weighted clicks 2 + 1 + 1 over the 7 search impressions of the window
    q_ctr = (3 + CTR_PRIOR * window_ctr) / (5 + CTR_PRIOR)
    assert stats.ctr[q] == pytest.approx(q_ctr, rel=1e-6) and stats.ctr[-1] == pytest.approx(window_ctr, rel=1e-6)
    f = stats.features(one(np.full(4, q)), one(np.ones(4)), np.arange(4), s.item_category, s.item_brand)
    cat_prior = stats.cat_prior  # by category + 1: none, tea, books (+1 each)
    assert cat_prior[1] == pytest.approx((3 + 1) / (4 + 3))  # tea: 3 of the 4 weighted search clicks
    assert f[0, COL["query_category_share"]] == pytest.approx((3 + SHARE_PRIOR * cat_prior[1]) / (3 + SHARE_PRIOR))
    assert f[2, COL["query_category_share"]] == pytest.approx((0 + SHARE_PRIOR * cat_prior[2]) / (3 + SHARE_PRIOR))
    tea_ctr = (3 + CTR_PRIOR * q_ctr) / (3 + CTR_PRIOR)  # 3 weighted clicks on 3 tea impressions
    assert f[0, COL["query_category_ctr"]] == pytest.approx(tea_ctr, rel=1e-6)
    # item 0: 3 weighted clicks in 2 impressions; item 1 shown once, not clicked: below its category's rate
    assert f[0, COL["query_item_ctr"]] == pytest.approx((3 + CTR_PRIOR * tea_ctr) / (2 + CTR_PRIOR), rel=1e-6)
    assert f[1, COL["query_item_ctr"]] < tea_ctr < f[0, COL["query_item_ctr"]]
    assert f[0, COL["query_known"]] == 1 and f[0, COL["query_log_lists"]] == pytest.approx(np.log1p(2))


def test_an_unknown_query_reads_the_priors():
    s = shop([("tea", [(0, 1, 0), (2, 0, 0)]), ("tea", [(0, 1, 0)])], stats_lists=2)
    stats, _ = build_qs.build(s, QueryStatsConfig(min_lists=1), embeddings(s))
    f = stats.features(
        one(np.full(4, -1)), one(np.zeros(4)), np.array([0, 1, 2, -1]), np.array([0, 0, 1, -1]), np.array([0, 1, 0, -1])
    )
    assert (f[:, COL["query_known"]] == 0).all() and (f[:, COL["query_log_lists"]] == 0).all()
    np.testing.assert_allclose(f[:, COL["query_category_share"]], stats.cat_prior[[1, 1, 2, 0]])
    np.testing.assert_allclose(f[:, COL["query_category_ctr"]], stats.ctr[-1])
    np.testing.assert_allclose(f[:, COL["query_item_ctr"]], stats.ctr[-1])
    empty = QueryStats.empty(2, 2, 4)
    rows, weights = empty.match(["tea"], np.ones((1, 384), np.float32))
    assert rows.tolist() == [[-1]] and weights.tolist() == [[0.0]]
    assert empty.features(
        rows.repeat(2, 0), weights.repeat(2, 0), np.zeros(2, int), np.zeros(2, int), np.zeros(2, int)
    ).shape == (2, 6)


def test_tables_are_bounded_by_the_settings():
    lists = [("tea", [(i, 1, 0) for i in range(4)])] * 3 + [("books", [(2, 1, 0), (3, 0, 0)])] * 2
    s = shop(lists, stats_lists=len(lists))
    stats, report = build_qs.build(
        s, QueryStatsConfig(min_lists=1, max_queries=1, top_items=2, top_categories=1), embeddings(s)
    )
    assert report["kept_queries"] == 1 and stats.row("tea") == 0 and stats.row("books") == -1  # the most frequent
    assert report["pairs"] == {"cat": 1, "brand": 2, "item": 2}


def test_saved_tables_load_as_mapped_read_only_views(tmp_path):

    s = shop([("tea", [(0, 1, 0), (2, 0, 0)])] * 2, stats_lists=2)
    stats, _ = build_qs.build(s, QueryStatsConfig(), embeddings(s))
    stats.save(tmp_path)
    loaded = QueryStats.load(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(QueryStats.files())
    assert is_mapped(loaded.item_keys) and not loaded.item_keys.flags.writeable
    args = (one(np.zeros(2, int)), one(np.ones(2)), np.array([0, 2]), np.array([0, 1]), np.array([0, 0]))
    np.testing.assert_array_equal(loaded.features(*args), stats.features(*args))


def test_a_query_not_in_the_tables_borrows_from_its_nearest_head_queries():
    lists = [("tea", [(0, 1, 0), (2, 0, 0)])] * 3 + [("books", [(2, 1, 0), (0, 0, 0)])] * 2
    s = shop(lists, stats_lists=len(lists))
    emb = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)  # books, tea (sorted)
    settings = QueryStatsConfig(min_lists=1, borrow_neighbours=2, borrow_min_similarity=0.5)
    stats, report = build_qs.build(s, settings, emb)
    assert report["borrowable_queries"] == 2 and stats.width == 2
    tea, books = stats.row("tea"), stats.row("books")
    near_tea = np.array([[0.9, np.sqrt(1 - 0.81)]], np.float32)  # cosine 0.9 with tea, 0.44 with books
    rows, weights = stats.match(["teaa", "tea", "far away"], np.vstack([near_tea, near_tea, [[-1.0, 0.0]]]))
    assert rows.tolist() == [[tea, -1], [tea, -1], [-1, -1]]  # books is below 0.5; the exact query wins
    np.testing.assert_allclose(weights, [[0.9, 0], [1, 0], [0, 0]], rtol=1e-6)
    items, cats, brands = np.array([0, 2]), s.item_category[[0, 2]], s.item_brand[[0, 2]]
    borrowed = stats.features(rows[:1].repeat(2, 0), weights[:1].repeat(2, 0), items, cats, brands)
    own = stats.features(rows[1:2].repeat(2, 0), weights[1:2].repeat(2, 0), items, cats, brands)
    np.testing.assert_allclose(borrowed[:, 1:], own[:, 1:])  # one neighbour: its statistics
    assert borrowed[0, COL["query_known"]] == pytest.approx(0.9) and own[0, COL["query_known"]] == 1
    both = np.array([[tea, books]]), np.array([[0.75, 0.25]], np.float32)
    mixed = stats.features(both[0].repeat(2, 0), both[1].repeat(2, 0), items, cats, brands)
    alone_books = stats.features(np.array([[books]] * 2), np.ones((2, 1)), items, cats, brands)
    np.testing.assert_allclose(mixed[:, 1:], 0.75 * own[:, 1:] + 0.25 * alone_books[:, 1:], rtol=1e-5)
    assert mixed[0, COL["query_known"]] == pytest.approx(0.75)


def test_counting_in_many_chunks_gives_the_same_tables(monkeypatch):
    rng = np.random.default_rng(3)
    texts = ["tea", "books", "coffee", "Tea!", "wine"]
    lists = [
        (texts[rng.integers(5)], [(int(i), int(rng.random() < 0.4), 0) for i in rng.choice(4, 3, replace=False)])
        for _ in range(60)
    ]
    s = shop(lists, stats_lists=60)
    settings = QueryStatsConfig(min_lists=1)
    one, _ = build_qs.build(s, settings, embeddings(s))
    monkeypatch.setattr(build_qs, "CHUNK_IMPRESSIONS", 4)  # a chunk is about one list: many chunks
    many, _ = build_qs.build(s, settings, embeddings(s))
    for name, value in one.arrays.items():
        np.testing.assert_allclose(many.arrays[name], value, rtol=1e-6, err_msg=name)


def test_the_served_tables_count_the_newest_window_before_the_held_out_days(tmp_path):
    from builders import steps
    from builders.data.dataset import newest_window

    lists = [
        ("calming tea", [(0, 1, 0), (1, 0, 0)]),  # t 0, 1: the statistics window
        ("calming tea", [(0, 1, 0), (1, 0, 0)]),
        ("hygge", [(2, 1, 0), (3, 0, 0)]),  # t 2, 3: after it, before the held-out days
        ("hygge", [(2, 1, 0), (3, 0, 0)]),
        ("whodunit", [(1, 1, 0), (0, 0, 0)]),  # t 4, 5: the held-out days
        ("whodunit", [(1, 1, 0), (0, 0, 0)]),
    ]
    s = shop(lists, stats_lists=2)
    s.cuts = {"stats": 2, "train": 3, "validation": 4}
    assert newest_window(s).tolist() == [2, 3]  # as long as the statistics window, ending at the held-out days
    assert newest_window(s, "all").tolist() == [0, 1, 2, 3]

    report = steps.query_stats(s, QueryStatsConfig(min_lists=2), embeddings(s), tmp_path)
    trained = QueryStats.load(tmp_path / "feature_store")
    served = QueryStats.load(tmp_path / steps.SERVED_DIR / "feature_store")
    assert trained.row("calming tea") >= 0 and trained.row("hygge") == -1
    assert served.row("hygge") >= 0 and served.row("calming tea") == -1
    assert trained.row("whodunit") == served.row("whodunit") == -1  # no held-out list is counted
    assert report["window"] == "newest" and report["served"]["kept_queries"] == 1
    files = steps.served_query_files(tmp_path, tmp_path / "features")
    assert set(files) == set(steps.QUERY_FILES) and all(p.is_relative_to(tmp_path / "served") for p in files.values())

    # window stats: one set of tables, trained and served alike; a served set left from before is removed
    steps.query_stats(s, QueryStatsConfig(min_lists=2, window="stats"), embeddings(s), tmp_path)
    assert not (tmp_path / steps.SERVED_DIR).exists()
    files = steps.served_query_files(tmp_path, tmp_path / "features")
    assert all(p.parent.parent == tmp_path / "features" for p in files.values())
