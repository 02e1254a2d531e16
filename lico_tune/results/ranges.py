"""The range each metric can take, as trials store it: intervals shown in tables and charts are
clipped to it (a t interval of an accuracy near 100% at n = 2 can reach past 100).

Accuracies are stored in percent (train.evaluate: 100 * correct / total); insertion, deletion,
pointing-game and energy scores (also on the shortcut patch) are fractions in [0, 1]; overall =
insertion - deletion and lerf_morf = LeRF - MoRF deletion in [-1, 1]; the shortcut probe's
accuracies in percent and its patch_reliance (a difference of two) in [-100, 100]; SES and the
sanity check's Spearman correlations are in [-1, 1]; losses, temperatures (MM's tau and its target),
doses (ratios of gradient norms), Sinkhorn errors and iterations and times are >= 0; the at-chance
check's share and p-value, the 0/1 health flags and each term's fraction of the squared gradient norm
are in [0, 1]; the health checks' cosines are in [-1, 1]. A name not listed has no known range
(None: never clipped).
"""
from __future__ import annotations

import math
import re
from typing import Optional

from ..keys import (CLASS_TEXT_COS, MARGINAL_ERR, SINKHORN_ITERS, TAU, TAU_TARGET, TEXT_COS, TEXT_COS_BETWEEN,
                    TEXT_COS_BETWEEN0, TEXT_COS_IMAGE, TEXT_COS_PROJ, dose, grad_frac)


def _exact(*names: str) -> re.Pattern:
    return re.compile("^(%s)$" % "|".join(map(re.escape, names)))


_RANGES: list[tuple[re.Pattern, tuple[float, float]]] = [
    (re.compile(r"(^|/)acc(_ema)?$"), (0.0, 100.0)),
    (re.compile(r"^shortcut/acc_(clean|patched|shuffled)$"), (0.0, 100.0)),
    (re.compile(r"^shortcut/patch_reliance$"), (-100.0, 100.0)),
    (re.compile(r"^shortcut/patch_area$"), (0.0, 1.0)),
    (re.compile(r"^saliency/.+/(insertion|deletion|pointing|energy|pointing_mask|energy_mask|insertion_lerf|"
                r"deletion_lerf|patch_energy|patch_pointing|patched_insertion|patched_deletion)$"), (0.0, 1.0)),
    (re.compile(r"^saliency/.+/(overall|ses|sanity_top|sanity_full|patched_overall|lerf_morf)$"), (-1.0, 1.0)),
    (re.compile(r"^saliency/.+/seconds$|^train/|^mm/temperature$|^lr$"), (0.0, math.inf)),
    (re.compile(r"^eval/(top_pred_share|chance_p)$|^health/warn/"), (0.0, 1.0)),
    (_exact(TAU, TAU_TARGET, MARGINAL_ERR, SINKHORN_ITERS), (0.0, math.inf)),
    (re.compile("^(%s|%s)" % (re.escape(dose("")), re.escape(dose("", untrained=True)))), (0.0, math.inf)),
    (re.compile("^" + re.escape(grad_frac(""))), (0.0, 1.0)),
    (_exact(TEXT_COS, TEXT_COS_PROJ, CLASS_TEXT_COS, TEXT_COS_BETWEEN, TEXT_COS_BETWEEN0, TEXT_COS_IMAGE), (-1.0, 1.0)),
]


def metric_range(name: str) -> Optional[tuple[float, float]]:
    """(low, high) of a metric's stored values, or None when unknown. 'best:<m>' is <m>'s range."""
    name = name.removeprefix("best:")
    for pattern, rng in _RANGES:
        if pattern.search(name):
            return rng
    return None


def difference_range(name: str) -> Optional[tuple[float, float]]:
    """The range of a difference of two values of the metric: (low - high, high - low)."""
    r = metric_range(name)
    return None if r is None else (r[0] - r[1], r[1] - r[0])


def clip(low: float, high: float, rng: Optional[tuple[float, float]]) -> tuple[float, float]:
    """An interval clipped to `rng` (NaN stays NaN)."""
    if rng is None:
        return low, high
    lo = low if math.isnan(low) else min(max(low, rng[0]), rng[1])
    hi = high if math.isnan(high) else min(max(high, rng[0]), rng[1])
    return lo, hi


def clipped_interval(metric: str, mean: float, half_width: float) -> Optional[tuple[float, float]]:
    """mean ± half_width clipped to the metric's range, or None where it fits (then 'mean ± half_width'
    says it; else 'mean [low, high]': an accuracy of 73.96 ± 101.5 at n = 2 is 73.96 [0.00, 100.00])."""
    lo, hi = mean - half_width, mean + half_width
    clo, chi = clip(lo, hi, metric_range(metric))
    return None if (clo, chi) == (lo, hi) else (clo, chi)
