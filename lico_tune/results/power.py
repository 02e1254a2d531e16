"""What n seeds can and cannot show: equivalence tests (TOST), the minimal detectable effect of a
paired t-test, and the seeds an interval of a given half-width needs. statsmodels does the work.

* TOST (two one-sided t-tests, Schuirmann 1987) on paired differences d: H0 |mean d| >= margin
  against H1 |mean d| < margin; p = the larger of the two one-sided p-values (statsmodels'
  `ttost_paired`). p < alpha lets a report say "no difference larger than the margin".
* MDE: the true mean difference a two-sided paired t-test at `alpha` detects with `power`, given
  n pairs and the observed sd of the differences: effect size (in sd units) from statsmodels'
  `TTestPower.solve_power`, times the sd. The observed sd at small n is itself noisy: an
  estimate, not a guarantee.
* Seeds for a target half-width: the smallest n with t(1 - alpha/2, n - 1) * sd / sqrt(n) <= w,
  the sd taken as the one observed.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

MAX_SEEDS = 10_000      # the search for "seeds needed" stops here (reported as '>10000')


def tost_paired(arm: Sequence[float], base: Sequence[float], margin: float) -> dict:
    """Equivalence of paired samples within +-margin: {p_tost, t_lower, t_upper, df}; NaN when
    n < 2 or the differences have no spread."""
    from statsmodels.stats.weightstats import ttost_paired
    a, b = np.asarray(arm, float), np.asarray(base, float)
    d = a - b
    nan = {"p_tost": math.nan, "t_lower": math.nan, "t_upper": math.nan, "df": max(0, len(d) - 1)}
    if len(d) < 2 or not margin > 0 or np.allclose(d, d[0]):
        return nan
    p, (t1, _, df), (t2, _, _) = ttost_paired(a, b, -margin, margin)
    return {"p_tost": float(p), "t_lower": float(t1), "t_upper": float(t2), "df": int(df)}


def mde_paired(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The minimal detectable mean difference (metric units) of a two-sided paired t-test."""
    if n < 2 or not sd_diff > 0:
        return math.nan
    from statsmodels.stats.power import TTestPower
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                      alternative="two-sided")
    return float(np.asarray(es).item()) * sd_diff


def seeds_for_half_width(sd: float, half_width: float, level: float = 0.95) -> float:
    """The smallest n (>= 2) whose t interval has half-width <= `half_width` at this sd; inf
    past MAX_SEEDS, NaN without an sd."""
    from scipy import stats as sps
    if not sd > 0 or not half_width > 0:
        return math.nan
    q = 1 - (1 - level) / 2
    n = max(2, math.ceil((sps.norm.ppf(q) * sd / half_width) ** 2))   # the normal bound: t is wider
    lo = 2
    while n <= MAX_SEEDS and sps.t.ppf(q, n - 1) * sd / math.sqrt(n) > half_width:
        lo, n = n, n * 2
    if n > MAX_SEEDS:
        return math.inf
    # The smallest n in (lo, n] that meets the target (half-width falls with n).
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if sps.t.ppf(q, mid - 1) * sd / math.sqrt(mid) <= half_width:
            hi = mid
        else:
            lo = mid + 1
    return float(hi)
