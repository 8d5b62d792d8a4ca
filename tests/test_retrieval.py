"""Retrieval from the whole catalogue: the index build (builders/learning/retrieval.py) and the retrieval stage
(runtime/retrieval.py) on the small demo repository, in process. The served ensembles are tested in
test_retrieval_served.py."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from builders.data.shop import MISMATCH_QUERIES
from builders.learning import retrieval as rt
from runtime import contract as c
from runtime.errors import InvalidInput
from runtime.retrieval import (
    INDEX_FILE,
    SETTINGS_FILE,
    ItemIndex,
    Purchases,
    RetrievalSettings,
    Retriever,
    rows_float32,
)
from runtime.tables import FeatureTables


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 centres, with the zero row an items.npy ends with."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    x = centres[rng.integers(0, 50, n)] + 0.6 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.concatenate([x, np.zeros((1, dim))]).astype(np.float32)


@pytest.mark.unit
def test_exact_top_in_chunks_equals_a_full_sort(monkeypatch):
    emb = clustered(1_000, 16)
    queries = emb[:5] + 0.1
    monkeypatch.setattr(rt, "CHUNK", 64)  # many chunks, and a last one shorter than n
    got = rt.exact_top(emb, queries, 40)
    full = np.argsort(-(queries @ emb[:-1].T), axis=1)[:, :40]
    for g, f in zip(got, full, strict=True):
        assert set(g.tolist()) == set(f.tolist())
    assert got.max() < 1_000  # the zero row of unknown items is never an item


@pytest.mark.unit
def test_ivf_index_reaches_the_recall_target_with_the_nprobe_it_chose(tmp_path):
    emb = clustered(30_000, 32)
    samples = {"items": rt.sample_rows(emb[:-1], 100, 1)}
    report = rt.write(emb, samples, None, tmp_path, kind="auto", candidates=100, recall_target=0.9)
    assert report["kind"] == "ivf" and report["nlist"] == rt.choose_nlist(30_000)
    tried = report["tried"]
    assert tried[-1]["nprobe"] == report["nprobe"] and tried[-1]["recall@100_items"] >= 0.9
    assert all(t["recall@100_items"] < 0.9 for t in tried[:-1])  # the smallest that reaches it
    settings = RetrievalSettings.from_json((tmp_path / SETTINGS_FILE).read_text())
    assert settings.kind == "ivf" and settings.nprobe == report["nprobe"] and settings.candidates == 100
    index = ItemIndex.load(tmp_path, settings, emb)
    assert type(rt.faiss_module().downcast_InvertedLists(index.index.invlists)).__name__ == "OnDiskInvertedLists"
    # measured again on other queries, through the served class: the recall holds
    queries = rt.sample_rows(emb[:-1], 50, 7) + 0.05
    exact = rt.exact_top(emb, queries, 100)
    found = [index.search(q, 100)[0] for q in queries]
    recall = np.mean([len(np.intersect1d(f, e)) / 100 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.85


def _last_pid() -> int:
    """The last process or thread id the kernel handed out in this namespace (``/proc/loadavg``'s last field)."""
    with open("/proc/loadavg") as f:
        return int(f.read().split("/")[-1].split()[1])


@pytest.mark.unit
def test_a_memory_mapped_ivf_search_starts_no_threads(tmp_path):
    """FAISS reads a memory-mapped IVF's probed lists ahead with up to 32 threads a search unless told not to:
    a thread started and joined per probed list, per request."""
    emb = clustered(30_000, 32)
    samples = {"items": rt.sample_rows(emb[:-1], 100, 1)}
    rt.write(emb, samples, None, tmp_path, kind="ivf", candidates=100, recall_target=0.9)
    settings = RetrievalSettings.from_json((tmp_path / SETTINGS_FILE).read_text())
    index = ItemIndex.load(tmp_path, settings, emb)
    assert index.settings.nprobe >= 2  # old code: at least two threads a search
    queries = rt.sample_rows(emb[:-1], 100, 3) + 0.05
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    before = _last_pid()
    found = [index.search(q, 50)[0] for q in queries]
    started = (_last_pid() - before) % pid_max
    assert all(len(f) == 50 for f in found)
    assert started < len(queries), f"{started} threads or processes started during {len(queries)} searches"


@pytest.mark.unit
def test_small_catalogues_get_an_exact_index(tmp_path):
    emb = clustered(500, 8)
    report = rt.write(emb, {}, None, tmp_path)
    assert report["kind"] == "flat"
    index = ItemIndex.load(tmp_path, RetrievalSettings.from_json((tmp_path / SETTINGS_FILE).read_text()))
    rows, scores = index.search(emb[3], 5)
    assert rows[0] == 3 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / INDEX_FILE).exists()


@pytest.mark.unit
def test_purchases_by_user_row():
    bought = Purchases.from_pairs(np.array([2, 0, 2, 2]), np.array([7, 1, 3, 5]), n_users=4)
    assert bought.of(2).tolist() == [3, 5, 7] and bought.of(0).tolist() == [1]
    assert bought.of(1).size == 0 and bought.of(3).size == 0 and bought.of(-1).size == 0


@pytest.mark.unit
def test_settings_reject_what_cannot_be_served():
    with pytest.raises(ValueError, match="candidates"):
        RetrievalSettings(candidates=c.MAX_CANDIDATES + 1)
    with pytest.raises(ValueError, match="kind"):
        RetrievalSettings(kind="hnsw")


# -- the retrieval stage on the small demo repository --------------------------------------------------


@pytest.fixture(scope="module")
def retrievers(pipeline):
    return pipeline.retriever(False), pipeline.retriever(True)


def _uid(pipeline, bought: bool = False) -> int:
    r = pipeline.retriever(True)
    users = r.store.tables.user_ids_sorted
    rows = r.store.tables.user_rows(users)
    for uid, row in zip(users, rows, strict=True):
        if not bought or r.purchases.of(int(row)).size:
            return int(uid)
    raise AssertionError("no user with purchases in the small shop")


def _none():
    return np.zeros(0, np.int64)


def test_search_retrieves_the_nearest_items_in_stock(pipeline, retrievers):
    search, _ = retrievers
    uid = _uid(pipeline)
    emb = pipeline.query_embedding("running shoes")
    search.settings = dataclasses.replace(search.settings, behaviour_share=0.0)  # the nearest items alone
    try:
        out = search.search(np.array([uid]), np.array([b"running shoes"], object), emb, _none())
    finally:
        search.settings = search.index.settings
    ids = out[c.ITEM_IDS]
    n = search.settings.candidates
    assert len(ids) == n and len(set(ids.tolist())) == n
    t = search.store.tables
    rows = t.item_rows(ids)
    assert (rows >= 0).all() and (t.item_in_stock[rows] > 0).all()
    # the flat index is exact: what it retrieved is the best in-stock, not-bought items by inner product
    sims = search.item_embeddings[:-1] @ emb.reshape(-1)
    allowed = (t.item_in_stock[:-1] > 0) & ~np.isin(
        np.arange(t.n_items), search.purchases.of(int(t.user_rows(np.array([uid]))[0]))
    )
    best = np.argsort(-np.where(allowed, sims, -np.inf))[:n]
    assert set(rows.tolist()) == set(best.tolist())
    for name in (c.CAT_FEATURES, c.DENSE_FEATURES, c.ITEM_ROWS, c.AVAILABLE):
        assert len(out[name]) == n


def test_search_catalog_leaves_out_the_excluded_and_returns_k(pipeline):
    uid = _uid(pipeline)
    ids, scores = pipeline.search_catalog(uid, "running shoes", 10)
    assert len(ids) == 10 and (np.diff(scores) <= 0).all()
    again, _ = pipeline.search_catalog(uid, "running shoes", 10, exclude=ids[:3])
    assert not set(ids[:3].tolist()) & set(again.tolist())
    assert again[0] == ids[3]  # the rest keep their order


def test_recommendations_leave_out_purchases_and_context(pipeline, retrievers):
    _, rec = retrievers
    uid = _uid(pipeline, bought=True)
    row = int(rec.store.tables.user_rows(np.array([uid]))[0])
    bought = rec.id_of_row[rec.purchases.of(row)]
    out = rec.recommend(np.array([uid]), _none(), _none())
    assert not set(bought.tolist()) & set(out[c.ITEM_IDS].tolist())
    viewed = out[c.ITEM_IDS][:1]
    with_context = rec.recommend(np.array([uid]), viewed, _none())
    assert viewed[0] not in with_context[c.ITEM_IDS]
    np.testing.assert_allclose(np.linalg.norm(with_context[c.CONTEXT_EMBEDDING]), 1.0, rtol=1e-5)
    # the items co-visited with the viewed one lead the candidates, in their order (sold-out ones left out)
    t = rec.store.tables
    co, _ = rec.store.covisits.neighbours(t.item_rows(viewed))
    co = co[~np.isin(co, rec.purchases.of(row))][: int(rec.settings.covisit_share * rec.settings.candidates)]
    co = co[t.item_in_stock[co] > 0]
    assert len(co) > 0
    assert with_context[c.ITEM_IDS][: len(co)].tolist() == rec.id_of_row[co].tolist()
    # without them, the candidates are the viewed item's nearest items, nearest first (the vector is its
    # embedding alone beside a viewed item), closer to it than the user's own candidates
    base = rec.settings
    rec.settings = dataclasses.replace(base, covisit_share=0.0)
    try:
        nearest = rec.recommend(np.array([uid]), viewed, _none())
    finally:
        rec.settings = base
    v = rec.item_embeddings[t.item_rows(viewed)[0]]

    def closeness(ids):
        return np.asarray(rec.item_embeddings[t.item_rows(ids)], np.float32) @ np.asarray(v, np.float32)

    near = closeness(nearest[c.ITEM_IDS][:30])
    assert (np.diff(near) <= 1e-3).all(), near.round(3)
    assert near[:10].mean() > closeness(out[c.ITEM_IDS][1:11]).mean()


def test_a_cold_user_without_context_gets_the_popular_items(retrievers):
    _, rec = retrievers
    out = rec.recommend(np.array([-12345]), _none(), _none())
    t = rec.store.tables
    rows = t.item_rows(out[c.ITEM_IDS])
    popular_in_stock = [r for r in rec.popular.tolist() if t.item_in_stock[r] > 0][: len(rows)]
    assert rows.tolist() == popular_in_stock
    assert not np.any(out[c.CONTEXT_EMBEDDING])


def test_bad_id_lists_name_their_field(retrievers):
    search, rec = retrievers
    with pytest.raises(InvalidInput, match="^EXCLUDE_IDS: expected a 1-D list"):
        rec.recommend(np.array([1]), _none(), np.zeros((2, 2), np.int64))
    with pytest.raises(InvalidInput, match="^CONTEXT_ITEM_IDS: expected INT64"):
        rec.recommend(np.array([1]), np.zeros(2, np.int32), _none())
    with pytest.raises(InvalidInput, match="^CONTEXT_ITEM_IDS: 1001 ids is more than the limit"):
        rec.recommend(np.array([1]), np.arange(1001, dtype=np.int64), _none())
    with pytest.raises(InvalidInput, match="^CONTEXT_EMBEDDING: expected 384 values"):
        search.search(np.array([1]), np.array([b"shoes"], object), np.zeros((1, 3), np.float32), _none())
    with pytest.raises(InvalidInput, match="^QUERY: empty"):
        search.search(np.array([1]), np.array([b" "], object), np.zeros((1, 384), np.float32), _none())


def test_the_build_records_the_index_and_its_recall(small_build):
    repo, report = small_build
    settings = json.loads((repo / c.RETRIEVE_SEARCH / "1" / SETTINGS_FILE).read_text())
    assert settings["kind"] == "flat" and settings["measured"]["items"] == report["manifest"]["items"]
    assert report["retrieval"]["kind"] == "flat"
    for model in (c.RETRIEVE_SEARCH, c.RETRIEVE_RECOMMEND):
        assert (repo / model / "1" / INDEX_FILE).stat().st_size > 0


def test_recommendations_mix_the_users_nearest_items_with_the_popular_ones(pipeline, retrievers):
    import dataclasses

    _, rec = retrievers
    uid = _uid(pipeline)
    row = int(rec.store.tables.user_rows(np.array([uid]))[0])
    base = rec.settings
    got = {}
    try:
        for share in (0.0, 0.5, 1.0):
            rec.settings = dataclasses.replace(base, popular_share=share)
            got[share] = set(rec.recommend(np.array([uid]), _none(), _none())[c.ITEM_IDS].tolist())
    finally:
        rec.settings = base
    popular = set(rec.id_of_row[rec.popular[:100]].tolist()) - set(rec.id_of_row[rec.purchases.of(row)].tolist())
    assert len(got[0.5] & popular) > len(got[0.0] & popular)
    assert len(got[0.5] & got[0.0]) > 0 and len(got[0.5] & got[1.0]) > 0  # some of each


def test_a_sold_out_neighbourhood_gets_the_popular_items_in_stock(small_repo, pipeline):

    search = Retriever.load(small_repo / c.RETRIEVE_SEARCH / "1", recommend=False)
    # the neighbourhood alone: no clicked items, no boost (which would look twice as deep)
    search.settings = dataclasses.replace(search.settings, behaviour_share=0.0, category_boost=0.0)
    emb = pipeline.query_embedding("running shoes")
    t = search.store.tables
    search.max_fetch = 400  # the deepest fetch; everything it can reach is sold out below
    # (it reaches past 400 by the banned rows it drops: the excluded items may be among the nearest)
    nearest = np.argsort(-(np.asarray(search.item_embeddings[:-1], np.float32) @ emb.reshape(-1)))[:410]
    stock = np.array(t.item_in_stock)
    stock[nearest] = 0
    search.store.tables = FeatureTables({**t.arrays, "item_in_stock": stock})
    excluded = search.id_of_row[search.popular[:3]]  # the caller's exclusions still hold
    out = search.search(np.array([-5]), np.array([b"running shoes"], object), emb, excluded)
    rows = t.item_rows(out[c.ITEM_IDS])
    assert len(rows) == search.settings.candidates  # never an empty list for the ranker
    assert (stock[rows] > 0).all() and not np.isin(out[c.ITEM_IDS], excluded).any()
    want = [r for r in search.popular.tolist() if stock[r] > 0 and search.id_of_row[r] not in excluded]
    assert rows.tolist() == want[: len(rows)]


def test_a_query_with_statistics_retrieves_what_shoppers_clicked_first(small_repo, pipeline):
    """behaviour_share: the items clicked after the query (or its nearest head queries) lead the
    candidates, minus the excluded ones; a query the statistics do not know retrieves the nearest items."""

    search = Retriever.load(small_repo / c.RETRIEVE_SEARCH / "1", recommend=False)
    queries = search.store.queries
    head = next(
        q for q in pipeline.search_store.lexicon.categories if queries.row(q.split(">")[-1].strip().lower()) >= 0
    )
    text = head.split(">")[-1].strip().lower()
    emb = pipeline.query_embedding(text)
    rows, weights = queries.match([text], emb)
    clicked = queries.clicked_items(rows[0], weights[0], 10**6)
    assert clicked.size > 0
    share = 0.3
    search.settings = dataclasses.replace(search.settings, behaviour_share=share)
    limit = int(share * search.settings.candidates)
    in_stock = np.asarray(search.store.tables.item_in_stock)[clicked[:limit]] > 0
    want = search.id_of_row[clicked[:limit][in_stock]]
    excluded = want[:2]
    out = search.search(np.array([-5]), np.array([text.encode()], object), emb, excluded)
    got = out[c.ITEM_IDS]
    assert got[: len(want) - 2].tolist() == want[2:].tolist()  # first, in click order, the excluded left out
    assert not np.isin(got, excluded).any() and len(set(got.tolist())) == len(got) == search.settings.candidates
    far = np.zeros_like(emb)
    far[0, 0] = 1.0
    none = search.search(np.array([-5]), np.array([b"zzqx unknown"], object), far, _none())[c.ITEM_IDS]
    search.settings = dataclasses.replace(search.settings, behaviour_share=0.0)
    plain = search.search(np.array([-5]), np.array([b"zzqx unknown"], object), far, _none())[c.ITEM_IDS]
    np.testing.assert_array_equal(none, plain)  # nothing matched: the nearest items only


def test_the_category_boost_moves_the_querys_clicked_categories_up(small_repo, pipeline):
    """A query phrased without the catalogue's words ("laufschuhe"): its nearest items mix categories; the
    boost puts the category shoppers clicked for it first."""

    search = Retriever.load(small_repo / c.RETRIEVE_SEARCH / "1", recommend=False)
    queries, t = search.store.queries, search.store.tables

    def first_50_in_top(text: str, boost: float) -> float:
        emb = pipeline.query_embedding(text)
        rows, weights = queries.match([text], emb)
        top = int(np.argmax(queries.category_shares(rows[0], weights[0]))) - 1  # most clicked for the query
        search.settings = dataclasses.replace(search.settings, behaviour_share=0.0, category_boost=boost)
        ids = search.search(np.array([-5]), np.array([text.encode()], object), emb, _none())[c.ITEM_IDS]
        return float(np.mean(t.item_category[t.item_rows(ids[:50])] == top))

    known = [q for qs in MISMATCH_QUERIES.values() for q, _ in qs if queries.row(q) >= 0]
    mixed = [q for q in known if first_50_in_top(q, 0.0) < 0.8]
    assert mixed, known
    for text in mixed[:3]:
        assert first_50_in_top(text, 2.0) > first_50_in_top(text, 0.0), text


@pytest.mark.unit
def test_float16_rows_decode_to_the_same_float32_values_as_numpy():
    """The re-scoring's fp16 decoder equals numpy's cast bit for bit, on every float16 there is (signed zeros,
    subnormals, the largest values) and on a float32 table, and keeps the rows' order and an empty pick."""
    every = np.arange(2**16, dtype=np.uint16).view(np.float16)
    table = every[np.isfinite(every)][: 96 * 640].reshape(-1, 96)
    rows = np.random.default_rng(3).permutation(len(table)).astype(np.int64)
    got = rows_float32(table, rows)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), table[rows].astype(np.float32).view(np.uint32))
    assert rows_float32(table, rows[:0]).shape == (0, 96)
    plain = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(rows_float32(plain, np.array([2, 0])), plain[[2, 0]])
