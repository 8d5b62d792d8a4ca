"""Send the golden set to every pod and compare each answer with the build's.

A pod passes when every answer matches within the golden set's tolerance:

* a ranking has the expected length, every returned item was a candidate the build ranked (for the
  catalogue ensembles: one the build retrieved), the pod's
  score of each item is within the tolerance of the build's score of that item, and each position
  holds an item whose build score is within the tolerance of the build's score at that position (two
  near-tied items may change places; anything else is a difference);
* a listing request (filters, groups, pages, sort, facets, understood words) also has the build's variant
  groups and matching variants beside the items, and the build's RESULT_INFO (results to page through,
  facet counts, understood chips); where the golden set is not the cpu target's (TensorRT engines, the GPU
  scan), these are compared only when the items are the build's, and counts within 2% (at least 2);
* a bad request is refused with the build's error message (the field named), not answered.

The first differing request of each pod is shown in full, so the operator sees what differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rollout.golden import GoldenRequest, GoldenSet
from rollout.triton_http import Answer, Transport, Unreachable, catalogue_body, infer, infer_body
from runtime.contract import ARM_SUFFIX

ARMS = ("control", "treatment")


def difference(req: GoldenRequest, got: Answer, tol: float, exact: bool = True) -> str | None:
    """Why ``got`` is not the build's answer to ``req`` (None: it is, within ``tol``). ``exact``: the listing's
    answer beside the items must equal the build's (the cpu target), else ``listing_difference``'s slack."""
    if req.error is not None:
        if got.error is None:
            return f"expected the error {req.error!r}, got a ranking of {len(got.ids)} items"
        if req.error not in got.error:
            return f"expected the error {req.error!r}, got the error {got.error!r}"
        return None
    if got.error is not None:
        return f"expected a ranking of {len(req.top_ids)} items, got the error {got.error!r}"
    if len(got.ids) != len(got.scores) or len(got.ids) != len(req.top_ids):
        return (
            f"returned {len(got.ids)} items, expected {len(req.top_ids)}: got {got.ids[:10]}, want {req.top_ids[:10]}"
        )
    build = dict(zip(req.ranked_ids(), req.candidate_scores, strict=True))
    unranked = "was not retrieved by the build" if req.catalogue else "is not one of the request's candidates"
    seen: set[int] = set()
    for pos, (item, score) in enumerate(zip(got.ids, got.scores, strict=True)):
        want_item, want_score = req.top_ids[pos], req.top_scores[pos]
        if item in seen:
            return f"position {pos}: item {item} returned twice"
        seen.add(item)
        if item not in build:
            return f"position {pos}: item {item} {unranked}"
        built = build[item]
        if built is None:
            return f"position {pos}: item {item} is ranked; the build left it out (sold out)"
        if abs(score - built) > tol:
            return (
                f"position {pos}: item {item} scored {score:.6f}, the build scored it {built:.6f} "
                f"(|diff| {abs(score - built):.2g} > tolerance {tol:g})"
            )
        if abs(built - want_score) > tol:
            return (
                f"position {pos}: item {item} (build score {built:.6f}) where the build ranks item {want_item} "
                f"(score {want_score:.6f})"
            )
    if req.options is not None and (exact or got.ids == req.top_ids):
        return listing_difference(req, got, exact)
    return None


def listing_difference(req: GoldenRequest, got: Answer, exact: bool) -> str | None:
    """Why a listing answer's groups, matching variants or RESULT_INFO (without ``release``) differ from the
    build's; counts (``matches``, facet counts) within 2% (at least 2) where not ``exact``."""
    if got.groups != req.groups:
        return f"variant groups {got.groups[:10]}, the build's {req.groups[:10]}"
    if got.group_matches != req.group_matches:
        return f"matching variants per group {got.group_matches[:10]}, the build's {req.group_matches[:10]}"
    served = {k: v for k, v in got.info.items() if k != "release"}

    def close(a: object, b: object) -> bool:
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
        if not exact and isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
            return abs(a - b) <= max(2, round(0.02 * abs(b)))
        return a == b

    for key in sorted(set(served) | set(req.info)):
        if not close(served.get(key), req.info.get(key)):
            ours, build = json.dumps(served.get(key))[:200], json.dumps(req.info.get(key))[:200]
            return f"RESULT_INFO.{key} is {ours}, the build's {build}"
    return None


@dataclass
class PodResult:
    """One pod's verdict over the golden set."""

    pod: str
    checked: int = 0
    differing: int = 0
    first: tuple[GoldenRequest, str] | None = None  # the first differing request (by id) and how
    unreachable: str | None = None  # no answer at all: the pod fails

    @property
    def ok(self) -> bool:
        return self.unreachable is None and self.differing == 0 and self.checked > 0

    def to_json(self) -> dict:
        out: dict = {"pod": self.pod, "ok": self.ok, "checked": self.checked, "differing": self.differing}
        if self.first is not None:
            req, why = self.first
            out["first_difference"] = {"request": req.id, "kind": req.kind, "what": req.describe(), "why": why}
        if self.unreachable:
            out["unreachable"] = self.unreachable
        return out


@dataclass
class Verdict:
    golden: GoldenSet
    tolerance: float
    pods: list[PodResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.pods) and all(p.ok for p in self.pods)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "requests": len(self.golden.requests),
            "tolerance": self.tolerance,
            "repository_checksum": self.golden.repository_checksum,
            "pods": [p.to_json() for p in self.pods],
        }

    def text(self) -> str:
        lines = [
            f"golden set: {len(self.golden.requests)} requests (shop {self.golden.shop}, target "
            f"{self.golden.target}), score tolerance {self.tolerance:g}",
        ]
        for p in self.pods:
            if p.unreachable:
                lines.append(f"FAIL  {p.pod}: unreachable: {p.unreachable}")
            elif p.ok:
                lines.append(f"ok    {p.pod}: {p.checked}/{p.checked} requests match")
            else:
                lines.append(f"FAIL  {p.pod}: {p.differing} of {p.checked} requests differ")
                if p.first is not None:
                    req, why = p.first
                    lines.append(f"      first: {req.describe()}")
                    lines.append(f"      {why}")
        lines.append("verify: PASSED" if self.ok else "verify: FAILED")
        return "\n".join(lines)


def verify(
    golden: GoldenSet,
    pods: Mapping[str, Transport],
    tolerance: float | None = None,
    workers: int = 8,
    progress: Callable[[str], None] | None = None,
    arm: str = "control",
) -> Verdict:
    """Every golden request to every pod; a pod that cannot be reached at all fails as unreachable.
    ``arm``: ``"treatment"`` sends each request to its call's treatment ensemble (``<call>__treatment``)
    while an online test runs: the candidate's own golden set, checked before shoppers meet it."""
    if arm not in ARMS:
        raise ValueError(f"arm: expected one of {', '.join(ARMS)}, got {arm!r}")
    suffix = ARM_SUFFIX if arm == "treatment" else ""
    tol = golden.tolerance if tolerance is None else tolerance
    verdict = Verdict(golden, tol)
    bodies = [
        catalogue_body(r.user_id, r.k, r.query, r.exclude_ids, r.context_ids, r.options)
        if r.catalogue
        else infer_body(r.user_id, r.item_ids, r.k, r.query, r.options)
        for r in golden.requests
    ]
    exact = golden.target == "cpu"

    def one(send: Transport, i: int) -> Answer | str:
        try:
            return infer(send, golden.requests[i].model + suffix, bodies[i])
        except Unreachable as err:
            return str(err)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for name, send in pods.items():
            result = PodResult(name)
            answers = list(pool.map(lambda i, s=send: one(s, i), range(len(golden.requests))))
            for req, got in zip(golden.requests, answers, strict=True):
                if isinstance(got, str):
                    result.unreachable = got
                    break
                result.checked += 1
                why = difference(req, got, tol, exact)
                if why is not None:
                    result.differing += 1
                    if result.first is None:
                        result.first = (req, why)
            verdict.pods.append(result)
            if progress is not None:
                progress(f"verify: {name}: {'ok' if result.ok else 'FAIL'} ({result.checked} checked)")
    return verdict
