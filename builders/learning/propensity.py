"""Position propensities estimated from ordinary logs, and click metrics debiased with them.

Intervention harvesting (Agarwal et al., WSDM 2019): where the shop's logging rankers changed (an A/B
test, a re-rank, a randomised slice), the same item was shown for the same need at different
positions; its click rate across those positions measures the examination curve without a single
randomised experiment of our own. The estimator fits the position-based model on those groups only,
``E[clicks of (key, item) at k] = shown * relevance(key, item) * propensity(k)``, by alternating
closed-form Poisson updates (each is the maximum-likelihood step for one side given the other). A
group's key is the list's need: its query, else the item being viewed, else the user (homepage).
Items logged at one position only carry no information about position and are left out.

The propensities are relative to the top position (``propensity[0] == 1``); positions from
``len(curve) - 1`` on share the last value. ``ips_gains`` weights a logged gain by the inverse
propensity of the position it was logged at, clipped at ``CLIP`` (the usual variance guard).
"""

from __future__ import annotations

import numpy as np

from builders.data.dataset import impressions_of

CLIP = 10.0  # the largest inverse-propensity weight
ITERATIONS = 200
MIN_SHOWN = 5  # the fewest impressions a position needs in the harvested groups to get its own value


class NotIdentifiable(ValueError):
    """The logs cannot measure position bias (the message says why); the build then uses plain clicks."""


def list_keys(shop, sessions: np.ndarray) -> np.ndarray:
    """The need of each list of ``sessions`` as one int64: query, else viewed item, else user."""
    context = shop.session_context if len(shop.session_context) else np.full(len(shop.session_time), -1)
    q, v, u = shop.session_query[sessions], context[sessions], shop.session_user[sessions]
    kind = np.where(q >= 0, 0, np.where(v >= 0, 1, 2))
    value = np.where(q >= 0, q, np.where(v >= 0, v, np.maximum(u, -1) + 1))
    return (value.astype(np.int64) << 2) | kind


def estimate(keys: np.ndarray, items: np.ndarray, positions: np.ndarray, clicks: np.ndarray, n_positions: int) -> dict:
    """Relative examination propensities (``n_positions`` values, the last shared by all deeper
    positions) from impressions with their list key, item, 0-based position and click."""
    pos = np.minimum(np.asarray(positions, np.int64), n_positions - 1)
    _, group = np.unique(np.stack([keys, items]), axis=1, return_inverse=True)
    group = group.ravel()
    cell, inverse = np.unique(group * n_positions + pos, return_inverse=True)
    shown = np.bincount(inverse).astype(np.float64)
    clicked = np.bincount(inverse, weights=clicks.astype(np.float64))
    g, k = cell // n_positions, cell % n_positions
    # harvested groups: seen at two positions or more
    n_pos_of_group = np.bincount(g)
    keep = n_pos_of_group[g] >= 2
    g, k, shown, clicked = g[keep], k[keep], shown[keep], clicked[keep]
    _, g = np.unique(g, return_inverse=True)
    n_groups = int(g.max()) + 1 if g.size else 0
    if n_groups == 0:
        raise NotIdentifiable("no (list, item) pair was logged at two positions: position is not identifiable")
    per_pos_shown = np.bincount(k, weights=shown, minlength=n_positions)
    prop = np.ones(n_positions)
    group_clicks = np.bincount(g, weights=clicked, minlength=n_groups)
    pos_clicks = np.bincount(k, weights=clicked, minlength=n_positions)
    for _ in range(ITERATIONS):
        rel = group_clicks / np.maximum(np.bincount(g, weights=shown * prop[k], minlength=n_groups), 1e-12)
        exposure = np.bincount(k, weights=shown * rel[g], minlength=n_positions)
        prop = np.where(exposure > 0, pos_clicks / np.maximum(exposure, 1e-12), np.nan)
        top = prop[0] if np.isfinite(prop[0]) and prop[0] > 0 else np.nan
        if not np.isfinite(top):
            raise NotIdentifiable(
                "no harvested (list, item) pair was clicked at the top position: the curve has no reference"
            )
        prop = _fill(prop / top, per_pos_shown)
    return {
        "propensity": [round(float(x), 5) for x in prop],
        "groups": n_groups,
        "impressions": int(shown.sum()),
        "shown_per_position": [int(x) for x in per_pos_shown],
    }


def _fill(prop: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """Positions with too few harvested impressions take the value of the nearest shallower one."""
    out = prop.copy()
    for k in range(1, len(out)):
        if not np.isfinite(out[k]) or shown[k] < MIN_SHOWN:
            out[k] = out[k - 1]
    return np.clip(out, 1e-3, None)


def from_shop(shop, sessions: np.ndarray, n_positions: int) -> dict:
    """``estimate`` over every impression of ``sessions`` (the windows before validation)."""

    imp = impressions_of(shop, sessions)
    lst = shop.impression_session()[imp]
    key_of = np.zeros(len(shop.session_user), np.int64)
    key_of[sessions] = list_keys(shop, sessions)
    known = shop.imp_position[imp] >= 0
    imp, lst = imp[known], lst[known]
    if not imp.size:
        raise NotIdentifiable("no impression before the validation window has a position")
    if np.unique(shop.imp_position[imp]).size < 2:
        raise NotIdentifiable("every impression before the validation window was logged at one position")
    return estimate(key_of[lst], shop.imp_item[imp], shop.imp_position[imp], shop.imp_click[imp], n_positions)


def ips_gains(gains: np.ndarray, positions: np.ndarray, propensity: np.ndarray, clip: float = CLIP) -> np.ndarray:
    """Logged gains weighted by the clipped inverse propensity of their logged position (an unknown
    position, < 0, keeps its gain)."""
    pos = np.asarray(positions, np.int64)
    weight = np.minimum(1.0 / np.asarray(propensity)[np.clip(pos, 0, len(propensity) - 1)], clip)
    return gains * np.where(pos < 0, 1.0, weight)
