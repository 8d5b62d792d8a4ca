import numpy as np
import pytest

from builders.learning.metrics import auc, ndcg_at_k

pytestmark = pytest.mark.unit


def test_auc_perfect_reversed_and_ties():
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auc(y, np.zeros(4)) == 0.5
    assert auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.4, 0.5, 0.8])) == 0.75


def test_auc_needs_both_classes():
    with pytest.raises(ValueError):
        auc(np.ones(3), np.arange(3))


def test_ndcg_known_values():
    gains = np.array([0.0, 1.0, 3.0])
    offsets = np.array([0, 3])
    assert ndcg_at_k(gains, np.array([0.0, 1.0, 2.0]), offsets, 10) == pytest.approx(1.0)
    worst = (0 + 1 / np.log2(3) + 3 / np.log2(4)) / (3 + 1 / np.log2(3))
    assert ndcg_at_k(gains, np.array([2.0, 1.0, 0.0]), offsets, 10) == pytest.approx(worst)


def test_ndcg_skips_sessions_without_gain_and_cuts_at_k():
    gains = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    offsets = np.array([0, 2, 5])
    # session 0 has no gain (skipped); in session 1 the relevant item is ranked 3rd: outside k=2.
    assert ndcg_at_k(gains, np.array([1.0, 0.0, 0.0, 2.0, 1.0]), offsets, 2) == 0.0
