"""The quality gate: a compressed variant is published only if its NDCG@10 on the test split is
within a margin (default 1% relative) of the reference's.

The metric is NDCG@10 of the logged feedback (clicks and purchases), the one a real shop has; the
hidden-relevance NDCG@10 of the synthetic shop is reported next to it but not gated on.

Encoder variants are also held to what the encoder itself contributes. NDCG@10 over all lists
barely notices a damaged encoder (a fifth of the lists are homepage lists that do not use it, and
logged clicks are position-biased: removing the similarity term entirely costs the demo shop under
1% of it), so an encoder variant must keep at least ``MIN_RETAINED`` of the encoder's gain on the
search lists (``evaluate.encoder_contribution``: NDCG@10 with the similarity term minus without,
against the reference's), and a mean cosine to the teacher of at least ``MIN_COSINE`` on the
queries: the embedding is also used beyond this ranker (retrieval, analytics) and must stay in the
teacher's space.
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime.errors import ShoprankError

REFERENCE = "fp32"
DEFAULT_MARGIN = 0.01
GATED_METRIC = "ndcg@10"
MIN_COSINE = 0.95
COSINE_METRIC = "cosine_queries"
MIN_RETAINED = 0.8
RETAINED_METRIC = "encoder_gain_retained"


class QualityGateError(ShoprankError, RuntimeError):
    """A variant lost more quality than the margin allows."""


def relative_drop(reference: float, value: float) -> float:
    """How far ``value`` is below ``reference``, as a fraction of it (negative: better)."""
    return (reference - value) / reference


def verdict(
    name: str, quality: dict, reference: dict, margin: float = DEFAULT_MARGIN, metric: str = GATED_METRIC
) -> dict:
    """The gate's decision, without raising: ``passed``, ``relative_drop`` and, when refused, ``message``."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"quality margin must be in [0, 1), got {margin}")
    for source, q in (("variant", quality), ("reference", reference)):
        if metric not in q:
            raise QualityGateError(
                f"{source} of {name!r} has no {metric!r} measurement; rerun `python -m builders variants`"
            )
    drop = relative_drop(reference[metric], quality[metric])
    message = None
    if drop > margin:
        message = (
            f"variant {name!r} refused: {metric.upper()} {quality[metric]:.4f} is {drop:.2%} below the "
            f"reference {reference[metric]:.4f}, more than the allowed {margin:.2%} (--quality-margin)"
        )
    elif RETAINED_METRIC in quality and quality[RETAINED_METRIC] < MIN_RETAINED:
        message = (
            f"variant {name!r} refused: it keeps {quality[RETAINED_METRIC]:.0%} of what the encoder adds to the "
            f"searches' {quality.get('searches_metric', 'ndcg@10').upper()}, less than {MIN_RETAINED:.0%} "
            f"(its overall {metric.upper()} is {drop:.2%} below the reference)"
        )
    elif COSINE_METRIC in quality and quality[COSINE_METRIC] < MIN_COSINE:
        message = (
            f"variant {name!r} refused: mean cosine to the teacher on the query pool is "
            f"{quality[COSINE_METRIC]:.4f}, below {MIN_COSINE} (its {metric.upper()} is {drop:.2%} below "
            f"the reference)"
        )
    result = {
        "variant": name,
        "metric": metric,
        "reference": reference[metric],
        "value": quality[metric],
        "relative_drop": drop,
        "margin": margin,
        "passed": message is None,
    }
    if message:
        result["message"] = message
    return result


def check(
    name: str, quality: dict, reference: dict, margin: float = DEFAULT_MARGIN, metric: str = GATED_METRIC
) -> dict:
    """``verdict``, raising ``QualityGateError`` with its message when the variant is refused."""
    result = verdict(name, quality, reference, margin, metric)
    if not result["passed"]:
        raise QualityGateError(result["message"])
    return result


def publishable(work: Path, model: str, name: str, margin: float) -> tuple[Path, dict]:
    """The file of a measured variant that passes the gate, and the gate's verdict.

    Reads ``variants/report.json`` (``python -m builders variants``); raises ``QualityGateError``
    when the variant was not measured, its file is missing, or it loses more than ``margin``.
    """
    report_file = work / "variants" / "report.json"
    hint = f"python -m builders variants --work {work} --only {model}/{name}"
    if not report_file.exists():
        raise QualityGateError(f"no measured variants in {report_file}: run `{hint}` first")
    measured = json.loads(report_file.read_text()).get(model, {})
    if name not in measured or REFERENCE not in measured:
        raise QualityGateError(f"{model} variant {name!r} was not measured (have {sorted(measured)}): run `{hint}`")
    entry = measured[name]
    if not Path(entry["file"]).exists():
        raise QualityGateError(f"{model} variant file {entry['file']} is missing: run `{hint}`")
    return Path(entry["file"]), check(f"{model}/{name}", entry["quality"], measured[REFERENCE]["quality"], margin)
