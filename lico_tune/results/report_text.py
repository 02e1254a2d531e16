"""The prose of an ablation report (report.py): its caption, the correction and minimal-detectable-
effect sentences, the small-n and at-chance warnings, and how its numbers are written. Markdown,
LaTeX, JSON (render.py) and the dashboard's Ablations page say the same sentences. `rep` is a
report.ExperimentReport (not imported: the report imports this module's number formats)."""
from __future__ import annotations

import math

from ..keys import is_health
from .health_table import chance_note
from .resolution import IMAGE_RESAMPLES
from .stats import BOOTSTRAP_MIN_N, CORRECTION_NAMES, POWER, WILCOXON_MIN_N

FAMILIES = {"report": "every paired test of the report (all arms{b} × datasets × metrics)",
            "metric": "the paired tests of each metric (its arms{b} × datasets)"}   # {b}: ' × baselines' if several


def caption(rep) -> str:
    ci = ("Student t" if rep.method == "t" else
          f"BCa bootstrap, 10,000 resamples, t below n = {BOOTSTRAP_MIN_N}")
    ns = sorted(set(rep.summary["n"].astype(int))) if not rep.summary.empty else [0]
    n = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
    goals = ", ".join(f"{m} {rep.modes[m]}" for m in rep.metrics if not is_health(m))
    against = "baseline" if len(rep.baselines) < 2 else f"first baseline ({rep.baseline})"
    bold = (f"Bold: the best arm ({goals}) only where its paired {rep.pct} interval against the {against} excludes 0"
            if goals else "Nothing is bold")
    if any(map(is_health, rep.metrics)):
        bold += "; the health numbers describe the LICO terms and are never bold"
    return (f"Final-epoch value, mean ± {rep.pct} CI half-width over seeds ({ci}; {n} per cell); "
            f"an interval clipped to the metric's range is shown as [low, high]. {bold}. "
            f"The statistics use the {rep.n_usable} finished trials with intact results of the arms shown "
            f"(the experiment's trials by status are counted above; damaged ones are listed below).")


def correction_text(rep) -> str:
    family = FAMILIES[rep.family].format(b=" × baselines" if len(rep.baselines) > 1 else "")
    return (f"{CORRECTION_NAMES[rep.correction]} correction over {family}: "
            f"{rep.family_n} test(s) in the largest family. " +
            ("TOST p-values are corrected the same way over the equivalence tests. " if rep.margins else ""))

def resolution_text(rep) -> str:
    """The sentence on the seeds-by-images interval, when any row of the paired table has one."""
    p = rep.paired
    if p.empty or "ci_high_images" not in p.columns or not p["ci_high_images"].notna().any():
        return ""
    return (f"For accuracy, the CI (seeds × images) column also resamples the test images (a two-level "
            f"percentile bootstrap over seeds and the shared test set, {IMAGE_RESAMPLES:,} resamples, from each "
            f"trial's per-image correctness): a verdict marked (seeds × images) holds under it too; "
            f"'inconclusive at the test set's resolution' marks a seed-paired verdict that this interval does "
            f"not support (it crosses 0, or leaves the equivalence margin).")


def mde_text(rep) -> str:
    """One line per metric: the smallest true difference the design detects."""
    p = rep.paired.dropna(subset=["mde"]) if not rep.paired.empty else rep.paired
    if p.empty:
        return ""
    parts = []
    for m, g in p.groupby("metric", sort=False):
        d = rep.decimals(m)
        ns = sorted(set(g["n"].astype(int)))
        parts.append(f"{m}: {num(g['mde'].min(), d)}–{num(g['mde'].max(), d)} (n = "
                     f"{', '.join(map(str, ns))})" if len(g) > 1 else
                     f"{m}: {num(g['mde'].iloc[0], d)} (n = {ns[0]})")
    return (f"Minimal detectable effect (paired t, two-sided α = {rep.alpha:.2g}, power "
            f"{POWER:.0%}, the observed sd of the differences): " + "; ".join(parts) + ".")


def chance_warnings(rep) -> list[str]:
    """The note on arms/datasets whose trials learned nothing (health_table.chance_note), if any."""
    return [n for n in [chance_note(rep.at_chance)] if n]

def small_n_warnings(rep) -> list[str]:
    """Plain sentences about what this n cannot support."""
    out = []
    if rep.pooled:
        cells = ", ".join(f"{a} · {d}: {k}" for (a, d), k in sorted(rep.pooled.items()))
        out.append(f"⚠ Some arm x dataset cells pool different searched configurations (not only seeds): "
                   f"{cells}. Their n counts configurations x seeds; compare configurations in 'Best "
                   f"configuration' (over each one's own seeds) or the dashboard's Configurations table.")
    s, p = rep.summary, rep.paired
    if not s.empty and (s["n"] < 2).any():
        out.append(f"{int((s['n'] < 2).sum())} cell(s) have n = 1: no interval, no test.")
    if not s.empty and s["method"].str.contains("refused").any():
        out.append(f"The bootstrap was refused for {int(s['method'].str.contains('refused').sum())} cell(s) "
                   f"with n < {BOOTSTRAP_MIN_N} (at small n its 95% interval covers 51-83% in a simulation: "
                   f"benchmarks/bootstrap_coverage.py); they show the t interval.")
    if not p.empty:
        low = p[(p["n"] >= 2) & (p["n"] <= 3)]
        if not low.empty:
            dfs = sorted(set(low["df"].astype(int)))
            out.append(f"⚠ Small n: {len(low)} of {len(p)} comparisons have df = {', '.join(map(str, dfs))} "
                       f"(n = {', '.join(str(d + 1) for d in dfs)} seeds): t(0.975) = "
                       f"{', '.join('12.71' if d == 1 else '4.30' for d in dfs)}, so intervals are wide and a "
                       f"small p rests on {', '.join(str(d + 1) for d in dfs)} pairs; "
                       f"anything published needs n ≥ 5 seeds.")
        if (p["n"] < WILCOXON_MIN_N).any() and (p["n"] >= 2).any():
            out.append(f"Wilcoxon signed-rank not run where n < {WILCOXON_MIN_N} (its exact p cannot "
                       f"reach 0.05).")
        if (p["n"] < 2).any():
            out.append(f"{int((p['n'] < 2).sum())} comparison(s) share fewer than 2 seeds with "
                       f"{'the' if len(rep.baselines) == 1 else 'their'} baseline: no test.")
    return out


def is_missing(x) -> bool:
    """None or NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def num(x: float, d: int, sign: bool = False) -> str:
    """x with d decimals, never '-0.000'."""
    if x is None or math.isnan(x):
        return "–"
    r = round(float(x), d)
    r = 0.0 if r == 0 else r
    return f"{r:+.{d}f}" if sign else f"{r:.{d}f}"


def short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def p_text(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
