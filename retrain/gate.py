"""The promotion gate: a candidate release against the live one on the newest held-out lists.

Both releases rank the same lists, the newest window of the shop's logs that no model of the candidate
trained on (the build's ``test`` split: ``split_by_time``), through the serving code in process
(``builders/repository/pipeline.py``: the code the fused models run, on each release's own files). Each
list's logged impressions are the candidates; its clicks and purchases the gains (``2^(click + purchase) - 1``).

* **Quality**: NDCG@10 per list in the build report's views: ``logged``, ``ips`` (each gain weighted by the
  inverse propensity of its logged position, the curve the build estimates: ``rows.propensities``) and
  ``true`` (a generated shop's hidden relevance). Per view, the mean per list, and the candidate's paired
  difference to the live release with a 95% bootstrap interval over lists (``metrics.paired_interval``).
* **Latency**: p50/p99 of the same calls in this process, the two releases taking turns list by list (which
  goes first alternates), so a load on the machine that comes and goes weighs on both alike; and per list
  the candidate's time over the live release's (``time_ratio``).
* **The decision**: promote unless the candidate's NDCG@10 in the gate's view (``ips`` where the logs have
  positions, else ``logged``) is below the live release's by more than ``margin`` (relative), or it is slower
  by more than ``latency_margin``: the median over lists of its time over the live release's on the same
  list. Each refusal says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from builders.data.dataset import ShopData, split_by_time
from builders.learning import propensity as prop
from builders.learning.metrics import ndcg_per_list, paired_interval
from builders.learning.rows import MAX_POSITION, propensities
from builders.repository.pipeline import InProcessPipeline

ANONYMOUS = 2**62 + 1  # a user id no shop has: the visitor without an account
CLOCK: Callable[[], float] = time.perf_counter  # seconds; the gate's calls are timed by it


class Release(Protocol):
    """What the gate ranks with: a release's in-process pipeline (``InProcessPipeline``)."""

    def search(self, user_id: int, query: str, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def recommend(self, user_id: int, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class GateError(ValueError):
    """The gate cannot judge: the held-out window has no list to rank."""


@dataclass(frozen=True)
class GateSettings:
    margin: float = 0.01  # the NDCG@10 drop (relative) a candidate may have and still be promoted
    latency_margin: float = 0.25  # the p50 rise (relative) it may have
    max_lists: int = 1500  # held-out lists ranked (the newest first), to bound the gate's time
    resamples: int = 1000


@dataclass(frozen=True)
class HeldOut:
    """The lists both releases rank: per list its user, query (or None) and logged impressions."""

    users: np.ndarray  # [L] int64 user ids
    queries: list[str | None]
    offsets: np.ndarray  # [L+1] into the flat arrays
    items: np.ndarray  # [N] int64 item ids
    gains: dict[str, np.ndarray] = field(default_factory=dict)  # view -> [N]

    def __len__(self) -> int:
        return len(self.users)


def held_out(shop: ShopData, max_lists: int) -> HeldOut:
    """The newest ``max_lists`` lists of the test window with a click and two or more catalogue items."""
    lists = split_by_time(shop)["test"][::-1]
    curve = propensities(shop)["propensity"]
    users, queries, offsets, rows = [], [], [0], []
    for s in lists:
        imp = np.arange(shop.session_offsets[s], shop.session_offsets[s + 1])
        imp = imp[shop.imp_item[imp] >= 0]  # an item the catalogue does not have cannot be ranked
        if len(imp) < 2 or not shop.imp_click[imp].any():
            continue
        row = shop.session_user[s]
        users.append(int(shop.user_ids[row]) if row >= 0 else ANONYMOUS)
        q = shop.session_query[s]
        queries.append(shop.queries[q] if q >= 0 else None)
        rows.append(imp)
        offsets.append(offsets[-1] + len(imp))
        if len(users) >= max_lists:
            break
    if not users:
        raise GateError("the held-out window has no list with a click on two or more catalogue items")
    imp = np.concatenate(rows)
    gain = (2.0 ** (shop.imp_click[imp].astype(np.float64) + shop.imp_purchase[imp]) - 1).astype(np.float64)
    gains = {"logged": gain}
    if curve is not None:
        position = shop.imp_position[imp]
        logged = np.where(position > MAX_POSITION, -1, position)
        gains["ips"] = prop.ips_gains(gain, logged, np.asarray(curve))
    if shop.imp_relevance is not None:
        gains["true"] = 1.0 / (1.0 + np.exp(-shop.imp_relevance[imp].astype(np.float64)))
    return HeldOut(np.array(users, np.int64), queries, np.array(offsets), shop.item_ids[shop.imp_item[imp]], gains)


def _rank(pipeline: Release, lists: HeldOut, i: int) -> tuple[np.ndarray, float]:
    """List ``i``'s impression scores by the release, and the call's time in ms."""
    a, b = lists.offsets[i], lists.offsets[i + 1]
    items = lists.items[a:b]
    user, query = int(lists.users[i]), lists.queries[i]
    start = CLOCK()
    if query is None:
        ids, got = pipeline.recommend(user, items, len(items))
    else:
        ids, got = pipeline.search(user, query, items, len(items))
    took = (CLOCK() - start) * 1e3
    by_id = dict(zip(ids.tolist(), got.tolist(), strict=True))
    # an item the release left out (sold out in its tables) ranks last
    return np.array([by_id.get(item, -np.inf) for item in items.tolist()], np.float64), took


def score(pipeline: Release, lists: HeldOut) -> tuple[np.ndarray, np.ndarray]:
    """Every impression's score by the release (``[N]``), and each call's time in ms (``[L]``)."""
    got = score_side_by_side({"release": pipeline}, lists)
    return got["release"]


def score_side_by_side(pipelines: Mapping[str, Release], lists: HeldOut) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``score`` of each release, list by list: the releases rank each list one after the other, in turn
    first, so a load that comes and goes on the machine weighs on their times alike."""
    scores = {name: np.empty(len(lists.items), np.float64) for name in pipelines}
    times = {name: np.empty(len(lists), np.float64) for name in pipelines}
    names = list(pipelines)
    for i in range(len(lists)):
        a, b = lists.offsets[i], lists.offsets[i + 1]
        for name in names if i % 2 == 0 else names[::-1]:
            scores[name][a:b], times[name][i] = _rank(pipelines[name], lists, i)
    return {name: (scores[name], times[name]) for name in names}


def time_ratio(live: np.ndarray, candidate: np.ndarray) -> float:
    """How much slower the candidate is (``0.1``: 10%): the median over lists of its time over the live
    release's on the same list (``[L]`` ms each, timed in turns: ``score_side_by_side``).

    Not the ratio of the p50s: the lists mix searches (~3 ms) and recommendations (~0.5 ms), and the p50 of
    such a mix falls between the two modes, where a small shift of either moves it by a third."""
    ok = live > 0  # a list timed at 0 ms (a clock too coarse) is left out, not divided by
    return float(np.median(candidate[ok] / live[ok])) - 1 if ok.any() else 0.0


def compare(
    live: tuple[Path, int], candidate: tuple[Path, int], shop: ShopData, settings: GateSettings
) -> dict[str, Any]:
    """The gate's verdict: ``{"promote": bool, "reasons": [...], "quality": ..., "latency_ms": ..., "lists": n}``."""
    lists = held_out(shop, settings.max_lists)
    # in turns, list by list: one release after the other, a load that came and went between the two runs
    # moved the verdict on a release against itself by up to 22% here (docs/retrain.md, make bench-gate-noise)
    pipelines = {
        name: InProcessPipeline(repo, version) for name, (repo, version) in (("live", live), ("candidate", candidate))
    }
    ranked = score_side_by_side(pipelines, lists)
    scored = {name: s for name, (s, _) in ranked.items()}
    latency = {
        name: {"p50": round(float(np.percentile(t, 50)), 3), "p99": round(float(np.percentile(t, 99)), 3)}
        for name, (_, t) in ranked.items()
    }
    quality: dict[str, Any] = {}
    for view, gain in lists.gains.items():
        per = {n: ndcg_per_list(gain, s, lists.offsets, 10) for n, s in scored.items()}
        both = np.isfinite(per["live"]) & np.isfinite(per["candidate"])
        quality[view] = {
            "live": round(float(per["live"][both].mean()), 4),
            "candidate": round(float(per["candidate"][both].mean()), 4),
            "difference": paired_interval(per["candidate"][both] - per["live"][both], settings.resamples),
            "lists": int(both.sum()),
        }
    view = "ips" if "ips" in quality else "logged"
    q = quality[view]
    relative = (q["candidate"] - q["live"]) / q["live"] if q["live"] > 0 else 0.0
    slower = time_ratio(ranked["live"][1], ranked["candidate"][1])
    reasons = []
    if relative < -settings.margin:
        reasons.append(
            f"NDCG@10 ({view}) {q['candidate']:.4f} against the live {q['live']:.4f}: {relative:+.1%}, "
            f"beyond the margin of -{settings.margin:.1%} (difference {q['difference'][0]:+.4f}, "
            f"95% interval {q['difference'][1]:+.4f} to {q['difference'][2]:+.4f}, {q['lists']} lists)"
        )
    if slower > settings.latency_margin:
        reasons.append(
            f"{slower:+.0%} time per list (the median of the candidate's over the live release's on each list), "
            f"beyond the margin of +{settings.latency_margin:.0%} (p50 {latency['candidate']['p50']:.2f} ms against "
            f"{latency['live']['p50']:.2f} ms)"
        )
    return {
        "promote": not reasons,
        "reasons": reasons,
        "view": view,
        "relative": round(relative, 4),
        "quality": quality,
        "latency_ms": latency,
        "slower": round(slower, 4),
        "lists": len(lists),
    }
