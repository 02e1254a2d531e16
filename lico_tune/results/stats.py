"""Statistics over seeds: summaries with confidence intervals, paired comparisons against a
baseline arm, family-wise corrections, the Pareto front, and parameter importance.

Conventions (stated in every report):
* CI: Student t interval, mean +- t(1 - (1 - level)/2, n - 1) * sd / sqrt(n), sd with ddof=1;
  or a BCa bootstrap (scipy.stats.bootstrap, 10,000 resamples, seeded) when n >= BOOTSTRAP_MIN_N.
  Below that the bootstrap is refused and the t interval is used (the cell says so): the
  coverage simulation in benchmarks/bootstrap_coverage.py (table in benchmarks/RESULTS.md) finds
  nominal 95% BCa intervals covering 51% at n = 2, 72% at n = 3, 83% at n = 5, and under 90% below
  n = 15 for a skewed metric (the t interval: 91-95% at every n).
  n = 1 has no interval (NaN).
* Paired comparison: trials of an arm and of the baseline are matched on (dataset, seed) (trials
  that share a key are averaged first); the differences d = arm - baseline get a t interval and a
  paired t-test (= one-sample t-test of d); the Wilcoxon signed-rank test is run only when
  n >= 6: below that its exact two-sided p-value cannot fall below 0.05 (n = 5: 2/32 = 0.0625).
  With a margin, a TOST equivalence test (`power.tost_paired`); always the minimal detectable
  effect at 80% power (`power.mde_paired`).
* Family-wise correction (`correct`): Holm or Benjamini-Hochberg through statsmodels'
  `multipletests`, over the family the report chooses (default: every test it prints).
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..keys import is_hyperparameter
from .power import mde_paired, tost_paired
from .ranges import clip as _clip, metric_range

WILCOXON_MIN_N = 6
# The smallest n at which the BCa bootstrap's nominal 95% interval covered at least 90% for both
# simulated distributions (normal 92.3%, lognormal 90.4% at n = 15; 90.3% and 87.5% at n = 10):
# benchmarks/bootstrap_coverage.py, 4,000 samples per cell.
BOOTSTRAP_MIN_N = 15
BOOTSTRAP_RESAMPLES = 10_000
CORRECTIONS = {"holm": "holm", "bh": "fdr_bh"}          # our name -> statsmodels' method
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
POWER = 0.8


def _clean(values: Iterable[float]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not _nan(v)], dtype=float)


def t_interval(values: Iterable[float], level: float = 0.95) -> dict:
    """mean, sd, n, ci_low, ci_high, half_width of a t interval."""
    x = _clean(values)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    if n > 1:
        half = float(sps.t.ppf(1 - (1 - level) / 2, n - 1) * sd / math.sqrt(n))
    else:
        half = math.nan
    return {"mean": mean, "sd": sd, "n": n, "ci_low": mean - half, "ci_high": mean + half, "half_width": half,
            "method": "t"}


def bootstrap_interval(values: Iterable[float], level: float = 0.95, n_resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0, min_n: int = BOOTSTRAP_MIN_N) -> dict:
    """BCa bootstrap interval of the mean (scipy.stats.bootstrap, seeded so reports are
    reproducible). Below `min_n` values the bootstrap is refused: the t interval comes back,
    its method saying why. half_width is half the (possibly asymmetric) interval's width."""
    x = _clean(values)
    n = len(x)
    out = t_interval(x, level)
    if n < min_n:
        out["method"] = f"t (bootstrap refused: n={n} < {min_n})"
        return out
    if np.allclose(x, x[0]):
        out.update(ci_low=out["mean"], ci_high=out["mean"], half_width=0.0, method="bootstrap (BCa)")
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # scipy warns when BCa's jackknife is degenerate
        res = sps.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=level, method="BCa",
                            rng=np.random.default_rng(seed))
    lo, hi = (float(v) for v in res.confidence_interval)
    out.update(ci_low=lo, ci_high=hi, half_width=(hi - lo) / 2, method="bootstrap (BCa)")
    return out


def interval(values, level: float = 0.95, method: str = "t") -> dict:
    if method == "t":
        return t_interval(values, level)
    if method == "bootstrap":
        return bootstrap_interval(values, level)
    raise ValueError(f"CI method '{method}': use 't' or 'bootstrap'")


def _nan(v) -> bool:
    try:
        return math.isnan(v)
    except TypeError:
        return False


def aggregate(trials: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = ("experiment", "arm", "dataset"),
              level: float = 0.95, method: str = "t", clip: bool = True) -> pd.DataFrame:
    """One row per group and metric: [*by, metric, mean, sd, n, ci_low, ci_high, half_width, method,
    clipped]. With `clip`, ci_low and ci_high are clipped to the metric's range (ranges.py;
    `clipped` says where); half_width stays the unclipped interval's."""
    cols = [*by, "metric", "mean", "sd", "n", "ci_low", "ci_high", "half_width", "method", "clipped"]
    rows = []
    if trials.empty:
        return pd.DataFrame(columns=cols)
    for key, g in trials.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            if m not in g.columns:
                continue
            vals = pd.to_numeric(g[m], errors="coerce").dropna()
            if vals.empty:
                continue
            ci = interval(vals.tolist(), level, method)
            lo, hi = _clip(ci["ci_low"], ci["ci_high"], metric_range(m)) if clip else (ci["ci_low"], ci["ci_high"])
            clipped = (lo, hi) != (ci["ci_low"], ci["ci_high"]) and not math.isnan(lo)
            rows.append({**dict(zip(by, key)), "metric": m, **ci, "ci_low": lo, "ci_high": hi, "clipped": clipped})
    return pd.DataFrame(rows, columns=cols)


def correct(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Family-wise adjusted p-values through statsmodels' multipletests: 'holm' (family-wise
    error rate) or 'bh' (Benjamini-Hochberg false discovery rate). NaN stays NaN and is not
    counted in the family."""
    from statsmodels.stats.multitest import multipletests
    if method not in CORRECTIONS:
        raise ValueError(f"correction '{method}': use one of {', '.join(CORRECTIONS)}")
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method=CORRECTIONS[method])[1]
    return out.tolist()


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
    return correct(pvalues, "holm")


def paired_test(arm_values: Sequence[float], base_values: Sequence[float], level: float = 0.95,
                margin: Optional[float] = None, power: float = POWER) -> dict:
    """Paired comparison of matched samples (same order): difference arm - baseline.
    Also: df, the minimal detectable effect `mde` (two-sided paired t at alpha = 1 - level,
    `power`), and with a margin the TOST p-value `p_tost` of equivalence within +-margin."""
    a = np.asarray(arm_values, dtype=float)
    b = np.asarray(base_values, dtype=float)
    d = a - b
    n = len(d)
    ci = t_interval(d, level)
    out = {"n": n, "df": max(0, n - 1), "mean_diff": ci["mean"], "sd_diff": ci["sd"], "ci_low": ci["ci_low"],
           "ci_high": ci["ci_high"], "t": math.nan, "p_t": math.nan, "test": f"paired t-test (n={n})",
           "wilcoxon": math.nan, "p_wilcoxon": math.nan, "margin": math.nan if margin is None else float(margin),
           "p_tost": math.nan, "mde": mde_paired(ci["sd"], n, 1 - level, power), "note": ""}
    notes = []
    if n < 2:
        notes.append("n < 2: no test")
    elif np.allclose(d, d[0]):
        notes.append("identical differences: the t-test is undefined")
    else:
        res = sps.ttest_rel(a, b)
        out["t"], out["p_t"] = float(res.statistic), float(res.pvalue)
        if margin is not None:
            out["p_tost"] = tost_paired(a, b, margin)["p_tost"]
    if 2 <= n <= 3:
        notes.append(f"df = {n - 1}: the interval and p rest on {n} pairs")
    if n >= WILCOXON_MIN_N:
        if np.any(d != 0):
            w = sps.wilcoxon(a, b)
            out["wilcoxon"], out["p_wilcoxon"] = float(w.statistic), float(w.pvalue)
            out["test"] += f"; Wilcoxon signed-rank (n={n})"
        else:
            notes.append("all differences are zero: no Wilcoxon test")
    elif n >= 2:
        notes.append(f"Wilcoxon not run: n={n} < {WILCOXON_MIN_N} (its exact p cannot reach 0.05)")
    out["note"] = "; ".join(notes)
    return out


PAIRED_COLUMNS = ["experiment", "dataset", "metric", "arm", "baseline", "n", "df", "mean_diff", "sd_diff", "ci_low",
                  "ci_high", "t", "p_t", "p_adj", "test", "wilcoxon", "p_wilcoxon", "margin", "p_tost", "p_tost_adj",
                  "mde", "note", "seeds", "ci_low_images", "ci_high_images"]


def paired_vs_baseline(trials: pd.DataFrame, metrics: Sequence[str], baseline: str = "ce",
                       pair_on: Sequence[str] = ("seed",), level: float = 0.95,
                       margins: Optional[dict[str, float]] = None) -> pd.DataFrame:
    """Every arm against the baseline arm, per experiment, dataset and metric, matched on
    `pair_on` (the seed) within each dataset. `margins`: metric -> equivalence margin (TOST).
    p_adj and p_tost_adj are left NaN here: the family they are corrected over is the report's
    choice (`correct_family`). Columns: PAIRED_COLUMNS."""
    rows = []
    margins = margins or {}
    if trials.empty or baseline not in set(trials["arm"]):
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    for (exp, dataset), g in trials.groupby(["experiment", "dataset"], sort=True):
        for m in metrics:
            if m not in g.columns:
                continue
            per = g.dropna(subset=[m]).groupby(["arm", *pair_on])[m].mean()
            if baseline not in per.index.get_level_values(0):
                continue
            base = per.xs(baseline, level=0)
            for arm in sorted(set(per.index.get_level_values(0)) - {baseline}):
                cur = per.xs(arm, level=0)
                common = base.index.intersection(cur.index)
                res = paired_test(cur.loc[common].to_numpy(), base.loc[common].to_numpy(), level, margins.get(m))
                rows.append({"experiment": exp, "dataset": dataset, "metric": m, "arm": arm, "baseline": baseline,
                             **res, "p_adj": math.nan, "p_tost_adj": math.nan, "ci_low_images": math.nan,
                             "ci_high_images": math.nan,
                             "seeds": [plain_value(s) for s in common]})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def correct_family(paired: pd.DataFrame, method: str = "holm", family: str = "report") -> pd.DataFrame:
    """Fill p_adj (paired t) and p_tost_adj (TOST) of a paired table, corrected over the family:
    'report' = every row of the table (all arms x datasets x metrics), 'metric' = the rows of
    each metric (its arms x datasets). Returns a copy."""
    if family not in ("report", "metric"):
        raise ValueError(f"family '{family}': use 'report' or 'metric'")
    out = paired.copy()
    if out.empty:
        return out
    groups = [out.index] if family == "report" else [g.index for _, g in out.groupby("metric", sort=False)]
    for idx in groups:
        out.loc[idx, "p_adj"] = correct(out.loc[idx, "p_t"].astype(float).tolist(), method)
        out.loc[idx, "p_tost_adj"] = correct(out.loc[idx, "p_tost"].astype(float).tolist(), method)
    return out


def family_size(paired: pd.DataFrame, family: str = "report") -> int:
    """The largest number of tests one p-value was corrected over."""
    if paired.empty:
        return 0
    n = paired["p_t"].notna()
    return int(n.sum()) if family == "report" else int(n.groupby(paired["metric"]).sum().max())


def plain_value(v):
    """A numpy/pandas scalar (or a tuple of them) as a plain Python value; NaN and None as None."""
    if isinstance(v, tuple):
        return tuple(plain_value(x) for x in v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def pareto_mask(df: pd.DataFrame, objectives: dict[str, str]) -> pd.Series:
    """True for the rows no other row dominates (at least as good on every objective, better on
    one); rows missing an objective are False. objectives: column -> 'max' | 'min'."""
    cols = list(objectives)
    ok = df[cols].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
    x = df.loc[ok, cols].apply(pd.to_numeric).to_numpy(dtype=float)
    x = x * np.array([1.0 if objectives[c] == "max" else -1.0 for c in cols])
    keep = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        dominated = np.all(x >= x[i], axis=1) & np.any(x > x[i], axis=1)
        keep[i] = not dominated.any()
    mask = pd.Series(False, index=df.index)
    mask.loc[ok[ok].index] = keep
    return mask


def param_importance(trials: pd.DataFrame, params: Sequence[str], metric: str, mode: str = "max",
                     seed: int = 0) -> pd.DataFrame:
    """Importance of each searched parameter for `metric` (normalised to sum 1).

    Optuna's fANOVA (a random-forest functional ANOVA) when optuna is installed and there are at
    least 4 trials; otherwise the share of the metric's variance that each parameter's groups
    explain (eta squared, one-way ANOVA). Parameters with one value are left out.
    Columns: param, importance, method."""
    cols = ["param", "importance", "method"]
    df = trials.dropna(subset=[metric]) if metric in trials.columns else trials.iloc[0:0]
    params = [p for p in params if p in df.columns and df[p].nunique(dropna=True) > 1]
    if df.empty or not params:
        return pd.DataFrame(columns=cols)
    try:
        out = _fanova(df, params, metric, mode, seed)
        method = "fANOVA (optuna)"
    except Exception:  # optuna missing, too few trials, or a failure inside the forest
        out = _eta_squared(df, params, metric)
        method = "eta squared (one-way ANOVA)"
    total = sum(out.values())
    rows = [{"param": p, "importance": (v / total if total > 0 else 0.0), "method": method} for p, v in out.items()]
    return pd.DataFrame(rows, columns=cols).sort_values("importance", ascending=False, ignore_index=True)


def _fanova(df: pd.DataFrame, params: list[str], metric: str, mode: str, seed: int) -> dict[str, float]:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    if len(df) < 4:
        raise ValueError("fANOVA needs at least 4 trials")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {}
    for p in params:
        col = df[p]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            lo, hi = float(col.min()), float(col.max())
            dists[p] = FloatDistribution(lo, hi)
        else:
            dists[p] = CategoricalDistribution(sorted({str(v) for v in col.dropna()}))
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for _, r in df.iterrows():
        values = {p: (float(r[p]) if isinstance(dists[p], FloatDistribution) else str(r[p])) for p in params
                  if not _nan(r[p])}
        study.add_trial(optuna.trial.create_trial(params=values, distributions={p: dists[p] for p in values},
                                                  value=float(r[metric])))
    ev = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    with warnings.catch_warnings():   # `normalize` is "experimental" in optuna; we normalise ourselves anyway
        warnings.simplefilter("ignore")
        return dict(optuna.importance.get_param_importances(study, evaluator=ev, params=params, normalize=False))


def _eta_squared(df: pd.DataFrame, params: list[str], metric: str) -> dict[str, float]:
    y = df[metric].astype(float)
    total = float(((y - y.mean()) ** 2).sum())
    out = {}
    for p in params:
        col = df[p]
        if pd.api.types.is_numeric_dtype(col) and col.nunique() > 6:
            col = pd.qcut(col, 4, duplicates="drop")
        groups = y.groupby(col.astype(str))
        between = float((groups.count() * (groups.mean() - y.mean()) ** 2).sum())
        out[p] = between / total if total > 0 else 0.0
    return out


def best_configs(trials: pd.DataFrame, metrics: dict[str, str], params: Sequence[str],
                 level: float = 0.95,
                 method: str = "t") -> pd.DataFrame:
    """For each metric, the configuration (arm, dataset and the searched parameters that vary,
    except the seed and the repeat index) with the best mean over its seeds. Only configurations
    with the most seeds of their experiment and dataset compete (with search.repeats N: the ones
    whose N repeats all reported the metric), so a lucky single seed is never "best".
    Columns: experiment, dataset, metric, mode, arm, config, mean, half_width, n, trials, config_id."""
    cols = ["experiment", "dataset", "metric", "mode", "arm", "config", "mean", "half_width", "n", "trials",
            "config_id"]
    rows = []
    if trials.empty:
        return pd.DataFrame(columns=cols)
    # The configuration: searched values that vary (fixed ones and the seed say nothing).
    cfg_cols = [p for p in params if p in trials.columns and is_hyperparameter(p) and trials[p].nunique(dropna=False) > 1]
    for (exp, dataset), g in trials.groupby(["experiment", "dataset"], sort=True):
        for m, mode in metrics.items():
            if m not in g.columns or g[m].notna().sum() == 0:
                continue
            keyed = g.dropna(subset=[m]).copy()
            keyed["_cfg"] = [repr(tuple(plain_value(r[c]) for c in cfg_cols)) for _, r in keyed.iterrows()]
            best = None
            full = keyed.groupby(["arm", "_cfg"]).size().max()
            for (arm, cfg), h in keyed.groupby(["arm", "_cfg"], sort=True):
                if len(h) < full:
                    continue
                ci = interval(h[m].tolist(), level, method)
                better = best is None or (ci["mean"] > best["mean"] if mode == "max" else ci["mean"] < best["mean"])
                if better:
                    first = h.iloc[0]
                    best = {"experiment": exp, "dataset": dataset, "metric": m, "mode": mode, "arm": arm,
                            "config": {c: plain_value(first[c]) for c in cfg_cols}, "mean": ci["mean"],
                            "half_width": ci["half_width"], "n": ci["n"], "trials": list(h["trial_id"]),
                            "config_id": first.get("config_id")}
            rows.append(best)
    return pd.DataFrame(rows, columns=cols)
