"""The ablation report: arms x datasets table (mean +- CI over seeds; bold only where a paired
interval separates the best arm from the first baseline), paired differences against the baseline
arm(s) (baselines.py; corrected over the report's family of tests, with TOST equivalence at a user margin and the
minimal detectable effect), small-n warnings, and the best configuration per metric. Rendered
as Markdown, CSV, LaTeX or JSON by `render.py`; the dashboard's Ablations page shows the same
tables (same functions)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import pandas as pd

from ..errors import suggest
from ..keys import is_health
from .baselines import names, paired_section, resolve_baselines
from .health_table import chance_cells, health_table
from .power import seeds_for_half_width
from .ranges import clip, clipped_interval, difference_range
from .stats import CORRECTION_NAMES, POWER, aggregate, best_configs, correct_family, family_size, plain_value
from .report_text import is_missing, num, p_text, short
from .table import Results, status_counts

FORMATS = ("md", "csv", "latex", "json")
SEP = " · "


@dataclass(kw_only=True)
class ExperimentReport:
    experiment: str
    metrics: list[str]
    modes: dict[str, str]
    arms: list[str]
    datasets: list[str]
    baseline: Optional[str]        # the first baseline: it leads the arms and decides what is bold
    level: float
    method: str
    summary: pd.DataFrame          # aggregate(): one row per arm, dataset, metric
    paired: pd.DataFrame           # paired_vs_baseline() + correct_family()
    best: pd.DataFrame             # best_configs()
    counts: dict[str, int]
    errors: list[dict] = field(default_factory=list)     # {trial, arm, dataset, seed, error}
    damaged: list[dict] = field(default_factory=list)    # {trial, warnings, usable}
    n_usable: int = 0
    correction: str = "holm"
    family: str = "report"
    family_n: int = 0              # tests one p-value was corrected over (set by build_report)
    margins: dict[str, float] = field(default_factory=dict)
    target_width: Optional[float] = None
    health: pd.DataFrame = field(default_factory=pd.DataFrame)   # health_table(): per arm and dataset
    pooled: dict = field(default_factory=dict)   # (arm, dataset) -> configurations pooled in that cell (> 1)
    baselines: list[str] = field(default_factory=list)   # every baseline, `baseline` first (baselines.py)
    at_chance: list[dict] = field(default_factory=list)  # chance_cells(): {arm, dataset, k, n} with k trials at chance
    run: dict = field(default_factory=dict)      # run_state(): {state, note, planned, path} (results/liveness.py)

    def __post_init__(self):
        self.baselines = list(self.baselines) or ([self.baseline] if self.baseline else [])

    # ------------------------------------------------------------------------- the ablation table

    def cell(self, arm: str, dataset: str, metric: str) -> Optional[dict]:
        s = self.summary
        hit = s[(s["arm"] == arm) & (s["dataset"] == dataset) & (s["metric"] == metric)]
        return None if hit.empty else hit.iloc[0].to_dict()

    def pair(self, arm: str, dataset: str, metric: str, baseline: Optional[str] = None) -> Optional[dict]:
        """The paired row of arm − baseline (default: the first baseline)."""
        p = self.paired
        hit = p[(p["arm"] == arm) & (p["dataset"] == dataset) & (p["metric"] == metric) &
                (p["baseline"] == (baseline or self.baseline))] if not p.empty else p
        return None if hit.empty else hit.iloc[0].to_dict()

    def best_arms(self, dataset: str, metric: str) -> set[str]:
        """The arms with the best mean (ties included), separated or not."""
        s = self.summary[(self.summary["dataset"] == dataset) & (self.summary["metric"] == metric)]
        if s.empty:
            return set()
        target = s["mean"].max() if self.modes[metric] == "max" else s["mean"].min()
        return set(s.loc[s["mean"] == target, "arm"])

    def bold_arms(self, dataset: str, metric: str) -> set[str]:
        """The best arm where the paired interval separates it from the baseline: a better arm's
        interval of (arm - baseline) excludes 0 on the good side; a best baseline is bold when
        every other arm's interval excludes 0 on the bad side. No baseline: nothing is bold, nor is a
        health number (a larger tau or dose is not a better arm)."""
        if not self.baseline or is_health(metric):
            return set()
        sign = 1.0 if self.modes[metric] == "max" else -1.0
        out = set()
        for arm in self.best_arms(dataset, metric):
            if arm != self.baseline:
                p = self.pair(arm, dataset, metric)
                if p is not None and _excludes_zero(p, sign):
                    out.add(arm)
            else:
                others = [self.pair(a, dataset, metric) for a in self.arms if a != self.baseline]
                others = [p for p in others if p is not None]
                if others and all(_excludes_zero(p, -sign) for p in others):
                    out.add(arm)
        return out

    def decimals(self, metric: str) -> int:
        vals = self.summary.loc[self.summary["metric"] == metric, "mean"].abs()
        top = vals.max() if not vals.empty else 1.0
        return 2 if top >= 10 else 3 if top >= 0.01 else 4

    def modal_n(self) -> int:
        return int(self.summary["n"].mode().iloc[0]) if not self.summary.empty else 0

    def format_cell(self, c: Optional[dict], metric: str) -> str:
        """'mean ± half-width', or 'mean [low, high]' when the interval is clipped to the metric's
        range or asymmetric (BCa)."""
        if c is None:
            return "–"
        d = self.decimals(metric)
        text = num(c["mean"], d)
        if not math.isnan(c["half_width"]):
            symmetric = abs((c["ci_high"] - c["mean"]) - (c["mean"] - c["ci_low"])) <= 1e-9 * max(1.0, abs(c["mean"]))
            text += (f" ± {c['half_width']:.{d}f}" if symmetric and not c.get("clipped") else
                     f" [{num(c['ci_low'], d)}, {num(c['ci_high'], d)}]")
        if c["n"] != self.modal_n() or c["n"] < 2:
            text += f" (n={c['n']})"
        return text

    def ablation_table(self, bold: Optional[str] = None) -> pd.DataFrame:
        """Rows: arms; columns: '<dataset> · <metric>'; cells 'mean ± half-width'. bold: None,
        'md' (**x**) or 'latex' (\\textbf{x}) for `bold_arms`."""
        data = {}
        for ds in self.datasets:
            for m in self.metrics:
                if self.summary[(self.summary["dataset"] == ds) & (self.summary["metric"] == m)].empty:
                    continue
                best = self.bold_arms(ds, m)
                col = []
                for arm in self.arms:
                    text = self.format_cell(self.cell(arm, ds, m), m)
                    if bold and arm in best and text != "–":
                        text = f"**{text}**" if bold == "md" else f"\\textbf{{{text}}}"
                    col.append(text)
                data[f"{ds}{SEP}{m}"] = col
        return pd.DataFrame(data, index=pd.Index(self.arms, name="arm"))

    # ------------------------------------------------------------------------- paired differences

    @property
    def alpha(self) -> float:
        return 1.0 - self.level

    @property
    def p_adj_label(self) -> str:
        return f"p ({CORRECTION_NAMES[self.correction]})"

    def against(self, quote: str = "`") -> str:
        """The baselines as the paired section's heading names them: '`ce`', '`ce` and `lico`'."""
        return names(self.baselines, quote)

    def verdict(self, r: dict) -> str:
        """What a row lets one say at alpha after the family-wise correction. Where the trials kept
        their per-image correctness (accuracy rows), a claim also needs the interval over seeds and
        test images (results/resolution.py) to agree: a difference that interval does not exclude 0
        from, or an equivalence it does not hold within the margin, is below the test set's resolution."""
        lo, hi = r.get("ci_low_images", math.nan), r.get("ci_high_images", math.nan)
        images = not (is_missing(lo) or is_missing(hi))
        if not is_missing(r["p_adj"]) and r["p_adj"] < self.alpha:
            word = "higher" if r["mean_diff"] > 0 else "lower"
            holds = lo > 0 if word == "higher" else hi < 0
        elif not is_missing(r.get("p_tost_adj", math.nan)) and r["p_tost_adj"] < self.alpha:
            word, margin = f"equivalent (±{short(r['margin'])})", r["margin"]
            holds = -margin <= lo and hi <= margin
        else:
            return "inconclusive"
        if not images:
            return word
        return f"{word} (seeds × images)" if holds else f"inconclusive at the test set's resolution ({word} over seeds)"

    def target(self, metric: str) -> Optional[float]:
        return self.target_width if self.target_width is not None else self.margins.get(metric)

    def paired_table(self) -> pd.DataFrame:
        """The paired differences, formatted for people."""
        cols = ["dataset", "metric", "comparison", "n", "mean diff", f"{self.pct} CI", "p (paired t)",
                self.p_adj_label]
        if self.margins:
            cols += ["p (TOST)"]
        cols += [f"MDE ({round(POWER * 100)}% power)"]
        if self.target_width is not None or self.margins:
            cols += ["seeds for ± target"]
        images = "ci_high_images" in self.paired.columns and self.paired["ci_high_images"].notna().any()
        if images:
            cols.insert(cols.index(f"{self.pct} CI") + 1, f"{self.pct} CI (seeds × images)")
        cols += ["p (Wilcoxon)", "verdict", "note"]
        rows = []
        for _, r in self.paired.iterrows():
            d = self.decimals(r["metric"])
            lo, hi = clip(r["ci_low"], r["ci_high"], difference_range(r["metric"]))
            ci = "–" if math.isnan(lo) else f"[{num(lo, d)}, {num(hi, d)}]"
            lo_i, hi_i = clip(r.get("ci_low_images", math.nan), r.get("ci_high_images", math.nan),
                              difference_range(r["metric"]))
            ci_images = "–" if is_missing(lo_i) else f"[{num(lo_i, d)}, {num(hi_i, d)}]"
            row = {"dataset": r["dataset"], "metric": r["metric"], "comparison": f"{r['arm']} − {r['baseline']}",
                   "n": int(r["n"]), "mean diff": num(r["mean_diff"], d, sign=True), f"{self.pct} CI": ci,
                   f"{self.pct} CI (seeds × images)": ci_images,
                   "p (paired t)": p_text(r["p_t"]), self.p_adj_label: p_text(r["p_adj"]),
                   "p (TOST)": (p_text(r["p_tost_adj"]) + f" (±{short(r['margin'])})") if not is_missing(r["margin"]) else "–",
                   f"MDE ({round(POWER * 100)}% power)": num(r["mde"], d),
                   "p (Wilcoxon)": p_text(r["p_wilcoxon"]), "verdict": self.verdict(r), "note": r["note"]}
            w = self.target(r["metric"])
            need = seeds_for_half_width(r["sd_diff"], w, self.level) if w else math.nan
            row["seeds for ± target"] = ("–" if is_missing(need) else (f">{10_000}" if math.isinf(need) else
                                                                  f"{int(need)} (±{short(w)})"))
            rows.append(row)
        return pd.DataFrame(rows, columns=cols)

    def best_table(self) -> pd.DataFrame:
        rows = []
        for _, r in self.best.iterrows():
            d = self.decimals(r["metric"])
            val = num(r["mean"], d)
            if not math.isnan(r["half_width"]):   # clipped to the metric's range as in the ablation table
                clipped = clipped_interval(r["metric"], r["mean"], r["half_width"])
                val += f" ± {r['half_width']:.{d}f}" if clipped is None else f" [{num(clipped[0], d)}, {num(clipped[1], d)}]"
            cfg = ", ".join(f"{k}={short(v)}" for k, v in r["config"].items()) or "(arm only)"
            rows.append({"metric": r["metric"], "dataset": r["dataset"], "goal": r["mode"], "arm": r["arm"],
                         "configuration": cfg, "mean": val, "n": int(r["n"]), "trials": ", ".join(r["trials"])})
        return pd.DataFrame(rows, columns=["metric", "dataset", "goal", "arm", "configuration", "mean", "n", "trials"])

    @property
    def pct(self) -> str:
        return f"{round(self.level * 100)}%"

def _excludes_zero(p: dict, sign: float) -> bool:
    """The paired interval lies strictly on the `sign` side of 0."""
    return (p["ci_low"] > 0) if sign > 0 else (p["ci_high"] < 0)


def default_metrics(res: Results, experiment: Optional[str] = None) -> list[str]:
    """The spec's search metrics, test accuracy (and of the EMA weights), and each saliency
    method's overall score (insertion - deletion), where trials reported them."""
    present = [m for m in res.metrics if m in res.trials.columns and res.usable[m].notna().any()] \
        if not res.empty else []
    wanted = list(res.declared_metrics(experiment)) + ["test/acc", "test/acc_ema"] + \
        [m for m in present if m.startswith("saliency/") and m.endswith("/overall")]
    return [m for m in dict.fromkeys(wanted) if m in present]


def parse_margins(items: Sequence[str], metrics: Sequence[str]) -> dict[str, float]:
    """`--margin 0.5` (every metric) and `--margin test/acc=0.5` (one metric) -> metric -> margin.
    Raises ValueError with the offending item."""
    out: dict[str, float] = {}
    default = None
    for item in items or ():
        name, _, value = item.rpartition("=")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"--margin {item!r}: give a number (every metric) or METRIC=NUMBER, "
                             f"e.g. --margin test/acc=0.5") from None
        if not v > 0:
            raise ValueError(f"--margin {item!r}: an equivalence margin must be > 0")
        if name:
            out[name] = v
        else:
            default = v
    return {m: out.get(m, default) for m in metrics if out.get(m, default) is not None}


def experiment_report(res: Results, experiment: str, metrics: Optional[Sequence[str]] = None,
                      baseline: Union[None, str, Sequence[str]] = None, level: float = 0.95, method: str = "t",
                      correction: str = "holm", family: str = "report", margins: Sequence[str] = (),
                      target_width: Optional[float] = None, only_arms: Sequence[str] = ()) -> ExperimentReport:
    r = res.experiment(experiment)
    usable = r.usable
    metrics = [m for m in (metrics or default_metrics(r, experiment))]
    missing = [m for m in metrics if m not in r.trials.columns]
    if missing:
        hint = suggest(missing[0], list(r.metrics)) or "."
        raise KeyError(f"{experiment}: no trial reported {', '.join(missing)}{hint} Reported metrics: "
                       f"{', '.join(r.metrics) or 'none'}.")
    modes = {m: r.mode(m, experiment) for m in metrics}
    spec_arms = list((r.experiments.iloc[0]["arms"] or {}) if not r.experiments.empty else {})
    present = list(dict.fromkeys(usable["arm"])) if not usable.empty else []
    arms = [a for a in spec_arms if a in present] + sorted(a for a in present if a not in spec_arms)
    baselines = resolve_baselines(res, experiment, arms, baseline)
    baseline = baselines[0] if baselines else None
    if only_arms:  # a declared family: these arms and the baselines, nothing else in the tables or tests
        unknown = sorted(set(only_arms) - set(arms))
        if unknown:
            raise KeyError(f"{experiment}: no finished trial of arm {', '.join(unknown)}; arms: {', '.join(arms)}")
        arms = [a for a in arms if a in set(only_arms) | set(baselines)]
        usable = usable[usable["arm"].isin(arms)]
    if baseline in arms:
        arms = [baseline] + [a for a in arms if a != baseline]
    datasets = sorted(set(usable["dataset"].dropna())) if not usable.empty else []
    margin_of = parse_margins(margins, metrics) if not isinstance(margins, dict) else dict(margins)
    summary = aggregate(usable, metrics, by=("arm", "dataset"), level=level, method=method)
    paired = paired_section(usable, metrics, baselines, level, margin_of, correction, family)
    ranked = {m: mode for m, mode in modes.items() if not is_health(m)}   # health numbers are not results
    best = best_configs(usable, ranked, r.params.get(experiment, []), level=level, method=method)
    t = r.trials
    errors = [{"trial": x["trial_dir"], "arm": x["arm"], "dataset": x["dataset"], "seed": plain_value(x["seed"]),
               "error": x["error"] or "(no reason recorded)"} for _, x in t[t["status"] == "errored"].iterrows()]
    damaged = [{"trial": x["trial_dir"], "warnings": x["warnings"], "usable": bool(x["usable"])}
               for _, x in t[t["damaged"]].iterrows()]
    pooled = {}
    if not usable.empty and "config_id" in usable.columns:
        counts = usable.groupby(["arm", "dataset"])["config_id"].nunique()
        pooled = {key: int(k) for key, k in counts.items() if k > 1}
    return ExperimentReport(experiment=experiment, metrics=metrics, modes=modes, arms=arms, datasets=datasets,
                            baseline=baseline, level=level, method=method, summary=summary, paired=paired,
                            best=best, counts=status_counts(t), errors=errors, damaged=damaged,
                            n_usable=len(usable), correction=correction, family=family,
                            family_n=family_size(paired, family), margins=margin_of, target_width=target_width,
                            health=health_table(usable), pooled=pooled, baselines=baselines,
                            at_chance=chance_cells(usable), run=run_state(r))


def run_state(r: Results) -> dict:
    """{state: running/finished/interrupted, note: why, planned: trials in the plan, path} of the one
    experiment in r (None values where the experiment predates them)."""
    if r.experiments.empty:
        return {}
    e = r.experiments.iloc[0]
    planned = e.get("n_planned")
    return {"state": e.get("run_state"), "note": e.get("run_note"), "path": e.get("path"),
            "planned": int(planned) if planned is not None and planned == planned else None}


def build_report(res: Results, experiment: Optional[str] = None, **kwargs) -> list[ExperimentReport]:
    """One report per experiment. With family 'report' and several experiments, the correction
    runs once over the paired tests of all of them (everything the report prints)."""
    names = [experiment] if experiment else list(res.experiments["experiment"])
    if experiment and experiment not in set(res.experiments["experiment"]):
        raise KeyError(f"no experiment '{experiment}' under {res.root}; there are: "
                       f"{', '.join(res.experiments['experiment']) or 'none'}")
    reports = [experiment_report(res, n, **kwargs) for n in names]
    if len(reports) > 1 and kwargs.get("family", "report") == "report":
        parts = [rep.paired.assign(_rep=i) for i, rep in enumerate(reports) if not rep.paired.empty]
        if parts:
            joint = correct_family(pd.concat(parts, ignore_index=True), kwargs.get("correction", "holm"), "report")
            for i, rep in enumerate(reports):
                mine = joint[joint["_rep"] == i].drop(columns="_rep")
                if not mine.empty:
                    rep.paired = mine.reset_index(drop=True)
            for rep in reports:
                rep.family_n = family_size(joint, "report")
    return reports
