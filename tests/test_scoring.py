import numpy as np
import pytest

from runtime.contract import EMBED_DIM, TOP_ITEM_IDS, TOP_SCORES
from runtime.errors import InvalidInput
from runtime.scoring import TopK, final_scores, top_k

pytestmark = pytest.mark.unit


def embeddings():
    emb = np.zeros((4, EMBED_DIM), np.float32)   # 3 items + the zero row for unknown items
    emb[0, 0], emb[1, 1], emb[2, 0] = 1.0, 1.0, -1.0
    return emb


def test_final_score_is_logit_plus_weighted_similarity():
    ctx = np.zeros((1, EMBED_DIM), np.float32)
    ctx[0, 0] = 1.0
    scores = final_scores(ctx, np.array([[0.5], [0.5], [0.5], [0.5]]), np.array([[2.0], [2.0], [1.0], [3.0]]),
                          np.array([0, 1, 2, -1]), embeddings())
    np.testing.assert_allclose(scores, [2.5, 0.5, -0.5, 0.5])   # unknown item (-1): similarity 0


def test_context_of_wrong_size_is_invalid():
    with pytest.raises(InvalidInput, match="CONTEXT_EMBEDDING"):
        final_scores(np.zeros((1, 3)), np.zeros((1, 1)), np.zeros((1, 1)), np.array([0]), embeddings())


def test_top_k_orders_best_first_keeps_request_order_on_ties_and_clips_k():
    ids, scores = top_k(np.array([1.0, 3.0, 3.0, 2.0], np.float32), np.array([10, 11, 12, 13]), 3)
    assert ids.tolist() == [11, 12, 13] and scores.tolist() == [3.0, 3.0, 2.0]
    ids, _ = top_k(np.array([1.0, 2.0], np.float32), np.array([5, 6]), 10)
    assert ids.tolist() == [6, 5]


def test_topk_rank_returns_the_response_tensors():
    out = TopK(embeddings()).rank(np.zeros((1, EMBED_DIM), np.float32), np.array([[0.1], [0.9]], np.float32),
                                  np.zeros((2, 1), np.float32), np.array([0, 1]), np.array([7, 8]),
                                  np.array([1], np.int32))
    assert out[TOP_ITEM_IDS].tolist() == [8] and out[TOP_SCORES].dtype == np.float32
