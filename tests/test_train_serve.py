"""Training features are serving features: the ranker's training rows for a logged session equal
what the served feature models compute for the same user, query and candidates."""

import numpy as np
import pytest

from builders.data.dataset import ShopData
from builders.learning.rows import list_contexts, make_rows
from runtime import contract as c
from runtime.features import FeatureStore
from runtime.ort_runner import make_session
from runtime.query_stats import QUERY_COLUMNS
from runtime.scoring import standardize
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(small_repo):
    work = REPO_ROOT / "build" / "small"
    shop = ShopData.load(work / "data")
    store = FeatureStore.load(small_repo / c.SEARCH_FEATURES / "1")
    rec_store = FeatureStore.load(small_repo / c.RECOMMEND_FEATURES / "1", with_tokenizer=False, with_profiles=True)
    item_emb = np.load(small_repo / c.TOPK / "1" / "item_embeddings.npy")
    query_emb = np.load(work / "embeddings" / "queries.npy")
    return shop, store, rec_store, item_emb, query_emb


def session_request(shop, s):
    items = shop.imp_item[shop.session_offsets[s] : shop.session_offsets[s + 1]]
    return np.array([shop.user_ids[shop.session_user[s]]]), shop.item_ids[items]


def test_search_training_rows_equal_served_features(world, small_repo):
    """Head queries (their own statistics), and queries the statistics do not know (borrowed from the nearest
    head queries by the served encoder's embedding, or the defaults)."""
    shop, store, rec_store, item_emb, query_emb = world
    search = np.flatnonzero(shop.session_query >= 0)
    known = np.append(store.queries.rows(shop.queries) >= 0, False)[shop.session_query[search]]
    sessions = np.concatenate([search[known][:20], search[~known][:15]])
    encoder = make_session(str(small_repo / c.TEXT_ENCODER / "1" / "model.onnx"), 2)
    # what search_features asks text_encoder for through BLS, for a query the statistics do not know
    store.embed = lambda ids, mask: encoder.run(None, {c.INPUT_IDS: ids, c.ATTENTION_MASK: mask})[0]
    query_cols = [c.DENSE_COLUMNS.index(n) for n in QUERY_COLUMNS]
    other_cols = [i for i in range(c.N_DENSE) if i not in query_cols]
    match = []
    for s in sessions:
        rows = make_rows(shop, store, item_emb, query_emb, rec_store.user_profiles, np.array([s]))
        user, item_ids = session_request(shop, s)
        query = np.array([shop.queries[shop.session_query[s]].encode()], object)
        served = store.search(user, query, item_ids)
        (emb,) = encoder.run(None, {c.INPUT_IDS: served[c.INPUT_IDS], c.ATTENTION_MASK: served[c.ATTENTION_MASK]})
        np.testing.assert_array_equal(rows.cat, served[c.CAT_FEATURES])
        np.testing.assert_array_equal(rows.dense[:, other_cols], served[c.DENSE_FEATURES][:, other_cols])
        # borrowed statistics are weighted by cosines: the build's batch encoding and the served one agree to
        # float32 noise
        np.testing.assert_allclose(rows.dense[:, query_cols], served[c.DENSE_FEATURES][:, query_cols], atol=1e-5)
        served_sim = standardize(item_emb[served[c.ITEM_ROWS]] @ emb[0])
        np.testing.assert_allclose(rows.sim, served_sim, atol=1e-5)
        match.append(served[c.DENSE_FEATURES][0, query_cols[0]])
    match = np.array(match)
    assert (match == 1).sum() == 20  # the head queries matched themselves
    assert ((match > 0) & (match < 1)).any()  # some others borrowed


def test_recommend_training_rows_equal_served_features(world):
    """Homepage lists and product pages: the viewed item as CONTEXT_ITEM_IDS, and what the user did before
    the list as the online store's recent list (``list_contexts``), give the training rows' features,
    co-visitation and context similarity included."""
    shop, _, rec_store, item_emb, query_emb = world
    home = np.flatnonzero((shop.session_query < 0) & (shop.session_context < 0))
    pages = np.flatnonzero(shop.session_context >= 0)
    with_context, covisited = 0, 0
    for s in np.concatenate([home[:15], pages[:20]]):
        rows = make_rows(shop, rec_store, item_emb, query_emb, rec_store.user_profiles, np.array([s]))
        user, item_ids = session_request(shop, s)
        _, (recent_rows,) = list_contexts(shop, np.array([s]))
        viewed = shop.item_ids[[shop.session_context[s]]] if shop.session_context[s] >= 0 else None
        recent = shop.item_ids[recent_rows[recent_rows >= 0]]
        served = rec_store.recommend(user, item_ids, viewed=viewed, recent=recent)
        np.testing.assert_array_equal(rows.cat, served[c.CAT_FEATURES])
        np.testing.assert_array_equal(rows.dense, served[c.DENSE_FEATURES])
        served_sim = standardize(item_emb[served[c.ITEM_ROWS]] @ served[c.CONTEXT_EMBEDDING][0])
        np.testing.assert_allclose(rows.sim, served_sim, atol=1e-5)
        on_page = served[c.DENSE_FEATURES][0, c.DENSE_COLUMNS.index("viewing_item")]
        assert on_page == (shop.session_context[s] >= 0)
        shares = [c.DENSE_COLUMNS.index(n) for n in ("viewed_same_category", "recent_same_category")]
        with_context += bool((served[c.DENSE_FEATURES][:, shares] > 0).any())
        covisited += int((served[c.DENSE_FEATURES][:, c.DENSE_COLUMNS.index("context_covisit_sum")] > 0).sum())
    assert with_context >= 20  # the product pages, and the homepage lists of users with a past
    assert covisited > 0  # some candidates were co-visited with their context


def test_an_unknown_item_scores_in_the_range_of_known_ones(pipeline, known_ids):
    """The ranker never saw item_known = 0 in training; its scaling must not turn that into an outlier
    (it did: a cold item's logit was about 7,000 and it ranked first in every request)."""
    users, items = known_ids
    cands = np.array([*items[100:150], 10**12 + 1], np.int64)
    feats = pipeline.search_store.search(np.array([users[1]]), np.array([b"hiking boots"], object), cands)
    logit, weight = pipeline.ranker.run(
        [c.LOGIT, c.SIM_WEIGHT], {c.CAT_FEATURES: feats[c.CAT_FEATURES], c.DENSE_FEATURES: feats[c.DENSE_FEATURES]}
    )
    known_logit, known_weight = np.abs(logit[:-1]).max(), np.abs(weight[:-1]).max()
    assert abs(logit[-1, 0]) < 3 * known_logit, (logit[-1, 0], known_logit)
    assert abs(weight[-1, 0]) < 3 * known_weight, (weight[-1, 0], known_weight)
