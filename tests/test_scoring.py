import numpy as np
import pytest

from runtime.contract import EMBED_DIM, TOP_ITEM_IDS, TOP_ITEM_KEYS, TOP_SCORES
from runtime.errors import InvalidInput
from runtime.scoring import SIM_EPS, TopK, candidate_vectors, final_scores, standardize, standardize_lists, top_k

pytestmark = pytest.mark.unit


def embeddings():
    emb = np.zeros((4, EMBED_DIM), np.float32)  # 3 items + the zero row for unknown items
    emb[0, 0], emb[1, 1], emb[2, 0] = 1.0, 1.0, -1.0
    return emb


def test_final_score_is_logit_plus_weighted_standardised_similarity():
    ctx = np.zeros((1, EMBED_DIM), np.float32)
    ctx[0, 0] = 1.0
    scores = final_scores(
        ctx,
        np.array([[0.5], [0.5], [0.5], [0.5]]),
        np.array([[2.0], [2.0], [1.0], [3.0]]),
        np.array([0, 1, 2, -1]),
        embeddings(),
    )
    # cosines 1, 0, -1 and 0 (unknown item, row -1): mean 0, variance 0.5 -> z = cos / sqrt(0.5 + SIM_EPS)
    z = np.array([1.0, 0.0, -1.0, 0.0]) / np.sqrt(0.5 + SIM_EPS)
    np.testing.assert_allclose(scores, 0.5 + np.array([2.0, 2.0, 1.0, 3.0]) * z, rtol=1e-6)


def test_standardised_similarity_is_the_same_per_request_and_per_training_list():
    rng = np.random.default_rng(0)
    cos = rng.uniform(-0.2, 0.7, 30).astype(np.float32)
    offsets = np.array([0, 1, 11, 30])
    lists = standardize_lists(cos, offsets)
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        np.testing.assert_array_equal(lists[a:b], standardize(cos[a:b]))
    assert lists[0] == 0.0  # a single candidate: no spread, z = 0
    z = standardize(cos[11:30])
    assert abs(z.mean()) < 1e-6 and 0.9 < z.std() < 1.0  # unit spread, shrunk a little by SIM_EPS
    np.testing.assert_allclose(standardize(cos[11:30] + 0.3), z, atol=1e-5)  # a query-wide offset is gone


def test_context_of_wrong_size_is_invalid():
    with pytest.raises(InvalidInput, match="CONTEXT_EMBEDDING"):
        final_scores(np.zeros((1, 3)), np.zeros((1, 1)), np.zeros((1, 1)), np.array([0]), embeddings())


def test_top_k_orders_best_first_keeps_request_order_on_ties_and_clips_k():
    ids, scores = top_k(np.array([1.0, 3.0, 3.0, 2.0], np.float32), np.array([10, 11, 12, 13]), 3)
    assert ids.tolist() == [11, 12, 13] and scores.tolist() == [3.0, 3.0, 2.0]
    ids, _ = top_k(np.array([1.0, 2.0], np.float32), np.array([5, 6]), 10)
    assert ids.tolist() == [6, 5]


def test_topk_rank_returns_the_response_tensors():
    out = TopK(embeddings()).rank(
        np.zeros((1, EMBED_DIM), np.float32),
        np.array([[0.1], [0.9]], np.float32),
        np.zeros((2, 1), np.float32),
        np.array([0, 1]),
        np.array([7, 8]),
        np.array([1], np.int32),
    )
    assert out[TOP_ITEM_IDS].tolist() == [8] and out[TOP_SCORES].dtype == np.float32
    assert out[TOP_ITEM_KEYS].tolist() == [b"8"]  # an integer shop: its ids in decimal


def test_topk_names_a_string_shops_skus_and_new_items_by_their_id():
    keys = np.array([b"SKU-1", "épi-2".encode(), b""], np.bytes_)  # rows 0, 1 and the unknown item
    out = TopK(embeddings(), keys).rank(
        np.zeros((1, EMBED_DIM), np.float32),
        np.array([[0.1], [0.9], [0.5]], np.float32),
        np.zeros((3, 1), np.float32),
        np.array([0, 1, -1]),
        np.array([7, 8, 9]),
        np.array([3], np.int32),
        np.array([True, True, True]),
    )
    assert out[TOP_ITEM_IDS].tolist() == [8, 9, 7]
    assert [k.decode() for k in out[TOP_ITEM_KEYS]] == ["épi-2", "9", "SKU-1"]


def test_new_items_read_their_embedding_unknown_items_zeros_and_bad_rows_are_named():

    table = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32)  # 2 items + the zero row
    new = np.array([[0.0, 0.0], [0.6, 0.8], [0.8, 0.6]], np.float32)
    got = candidate_vectors(np.array([1, -1, -3, -2, 0]), table, new)
    np.testing.assert_allclose(got, [[0, 1], [0, 0], [0.8, 0.6], [0.6, 0.8], [1, 0]], atol=1e-7)
    np.testing.assert_array_equal(candidate_vectors(np.array([0, -1]), table), [[1, 0], [0, 0]])
    with pytest.raises(InvalidInput, match="ITEM_ROWS: row -4 needs 4 new embeddings, got 0"):
        candidate_vectors(np.array([-4]), table)
    with pytest.raises(InvalidInput, match="NEW_EMBEDDINGS: expected 2 values per row, got 3"):
        candidate_vectors(np.array([-2]), table, np.zeros((2, 3), np.float32))
