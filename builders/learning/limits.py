"""What a shop's data cannot carry, and what the build does instead.

Valid data can still lack a kind of signal: no positions, one position, no item shown at two positions
for one need (so position bias cannot be measured), no searches, no homepage or product-page lists, no
known visitor. The build never stops for these; each step degrades to what the data supports (plain
clicks instead of debiased ones, the encoder instead of the query statistics, ...) and ``limits`` says so
in one sentence each, for ``check-data``, the build log (once) and ``build_report.json`` (``limits``).
"""

from __future__ import annotations

import numpy as np

from builders.data.dataset import ShopData
from builders.learning.rows import propensities


def limits(data: ShopData) -> list[str]:
    """What the shop's data cannot carry, and what the build does instead: each a sentence for the build log
    and ``build_report.json`` (empty for a shop whose data has every kind of list and signal)."""
    out = []
    known = data.imp_position[data.imp_position >= 0]
    if known.size == 0:
        out.append(
            "no event has a position: no position propensities, so the ranker is selected and judged on plain "
            "logged clicks (no debiased view), and its position-aware training sees one position"
        )
    elif np.unique(known).size == 1:
        out.append(
            f"every known position is {int(known[0])}: no position propensities, so the ranker is selected and "
            "judged on plain logged clicks (no debiased view)"
        )
    else:
        curve = propensities(data)
        if curve["propensity"] is None:
            out.append(f"position bias cannot be measured: {curve['why']}")
    search = data.session_query >= 0
    page = data.session_context >= 0 if len(data.session_context) else np.zeros(len(search), bool)
    if not search.any():
        out.append(
            "no list has a query: no query statistics, no fine-tune pairs and no search quality figures; search "
            "ranks by the encoder, the lexicon and the item statistics"
        )
    if not (~search).any():
        out.append(
            "no homepage or product-page list: recommendations are ranked by a ranker that saw search lists only"
        )
    elif not page.any():
        out.append(
            "no product-page list (context_item_id): recommendations beside an item are ranked by a ranker that "
            "saw no product page"
        )
    anonymous = data.session_user < 0
    if anonymous.all():
        out.append("every visitor is anonymous: no user history or profile; users are ranked as unknown visitors")
    return out
