"""The ablation report: arms x datasets table (mean +- CI over seeds, best in bold), paired
differences against the baseline arm, and the best configuration per metric; as Markdown, CSV,
LaTeX or JSON. The dashboard's Ablations page shows the same tables (same functions)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pandas as pd

from .stats import aggregate, best_configs, paired_vs_baseline
from .table import Results, status_counts

FORMATS = ("md", "csv", "latex", "json")
SEP = " · "


@dataclass
class ExperimentReport:
    experiment: str
    metrics: list[str]
    modes: dict[str, str]
    arms: list[str]
    datasets: list[str]
    baseline: Optional[str]
    level: float
    method: str
    summary: pd.DataFrame          # aggregate(): one row per arm, dataset, metric
    paired: pd.DataFrame           # paired_vs_baseline()
    best: pd.DataFrame             # best_configs()
    counts: dict[str, int]
    errors: list[dict] = field(default_factory=list)     # {trial, arm, dataset, seed, error}
    damaged: list[dict] = field(default_factory=list)    # {trial, warnings, usable}
    n_usable: int = 0

    # ------------------------------------------------------------------------- the ablation table

    def cell(self, arm: str, dataset: str, metric: str) -> Optional[dict]:
        s = self.summary
        hit = s[(s["arm"] == arm) & (s["dataset"] == dataset) & (s["metric"] == metric)]
        return None if hit.empty else hit.iloc[0].to_dict()

    def best_arms(self, dataset: str, metric: str) -> set[str]:
        s = self.summary[(self.summary["dataset"] == dataset) & (self.summary["metric"] == metric)]
        if s.empty:
            return set()
        target = s["mean"].max() if self.modes[metric] == "max" else s["mean"].min()
        return set(s.loc[s["mean"] == target, "arm"])

    def decimals(self, metric: str) -> int:
        vals = self.summary.loc[self.summary["metric"] == metric, "mean"].abs()
        top = vals.max() if not vals.empty else 1.0
        return 2 if top >= 10 else 3 if top >= 0.01 else 4

    def modal_n(self) -> int:
        return int(self.summary["n"].mode().iloc[0]) if not self.summary.empty else 0

    def format_cell(self, c: Optional[dict], metric: str) -> str:
        if c is None:
            return "–"
        d = self.decimals(metric)
        text = _num(c["mean"], d) + ("" if math.isnan(c["half_width"]) else f" ± {c['half_width']:.{d}f}")
        if c["n"] != self.modal_n() or c["n"] < 2:
            text += f" (n={c['n']})"
        return text

    def ablation_table(self, bold: Optional[str] = None) -> pd.DataFrame:
        """Rows: arms; columns: '<dataset> · <metric>'; cells 'mean ± half-width'. bold: None,
        'md' (**x**) or 'latex' (\\textbf{x}) for the best arm of each column."""
        data = {}
        for ds in self.datasets:
            for m in self.metrics:
                if self.summary[(self.summary["dataset"] == ds) & (self.summary["metric"] == m)].empty:
                    continue
                best = self.best_arms(ds, m)
                col = []
                for arm in self.arms:
                    text = self.format_cell(self.cell(arm, ds, m), m)
                    if bold and arm in best and text != "–":
                        text = f"**{text}**" if bold == "md" else f"\\textbf{{{text}}}"
                    col.append(text)
                data[f"{ds}{SEP}{m}"] = col
        return pd.DataFrame(data, index=pd.Index(self.arms, name="arm"))

    def paired_table(self) -> pd.DataFrame:
        """The paired differences, formatted for people."""
        rows = []
        for _, r in self.paired.iterrows():
            d = self.decimals(r["metric"])
            ci = "–" if math.isnan(r["ci_low"]) else f"[{_num(r['ci_low'], d)}, {_num(r['ci_high'], d)}]"
            rows.append({"dataset": r["dataset"], "metric": r["metric"],
                         "comparison": f"{r['arm']} − {r['baseline']}",
                         "n": int(r["n"]), "mean diff": _num(r["mean_diff"], d, sign=True), f"{self.pct} CI": ci,
                         "p (paired t)": _p(r["p_t"]), "p (Holm)": _p(r["p_holm"]),
                         "p (Wilcoxon)": _p(r["p_wilcoxon"]), "note": r["note"]})
        return pd.DataFrame(rows, columns=["dataset", "metric", "comparison", "n", "mean diff", f"{self.pct} CI",
                                           "p (paired t)", "p (Holm)", "p (Wilcoxon)", "note"])

    def best_table(self) -> pd.DataFrame:
        rows = []
        for _, r in self.best.iterrows():
            d = self.decimals(r["metric"])
            val = _num(r["mean"], d) + ("" if math.isnan(r["half_width"]) else f" ± {r['half_width']:.{d}f}")
            cfg = ", ".join(f"{k}={_short(v)}" for k, v in r["config"].items()) or "(arm only)"
            rows.append({"metric": r["metric"], "dataset": r["dataset"], "goal": r["mode"], "arm": r["arm"],
                         "configuration": cfg, "mean": val, "n": int(r["n"]), "trials": ", ".join(r["trials"])})
        return pd.DataFrame(rows, columns=["metric", "dataset", "goal", "arm", "configuration", "mean", "n", "trials"])

    @property
    def pct(self) -> str:
        return f"{round(self.level * 100)}%"

    def caption(self) -> str:
        ci = ("Student t" if self.method == "t" else "percentile bootstrap, 10,000 resamples")
        ns = sorted(set(self.summary["n"].astype(int))) if not self.summary.empty else [0]
        n = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
        goals = ", ".join(f"{m} {self.modes[m]}" for m in self.metrics)
        return (f"Final-epoch value, mean ± {self.pct} CI half-width over seeds ({ci}; {n} per cell); "
                f"best arm per column in bold ({goals}). Only finished trials with intact results "
                f"({self.n_usable} of {sum(self.counts.values())}).")


def _num(x: float, d: int, sign: bool = False) -> str:
    """x with d decimals, never '-0.000'."""
    if x is None or math.isnan(x):
        return "–"
    r = round(float(x), d)
    r = 0.0 if r == 0 else r
    return f"{r:+.{d}f}" if sign else f"{r:.{d}f}"


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _p(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def default_metrics(res: Results, experiment: Optional[str] = None) -> list[str]:
    """The spec's search metrics, test accuracy (and of the EMA weights), and each saliency
    method's overall score (insertion - deletion), where trials reported them."""
    present = [m for m in res.metrics if m in res.trials.columns and res.usable[m].notna().any()] \
        if not res.empty else []
    wanted = list(res.declared_metrics(experiment)) + ["test/acc", "test/acc_ema"] + \
        [m for m in present if m.startswith("saliency/") and m.endswith("/overall")]
    return [m for m in dict.fromkeys(wanted) if m in present]


def pick_baseline(res: Results, experiment: str, arms: Sequence[str]) -> Optional[str]:
    """'ce' when there is one, else the arm that turns both LICO losses off, else None."""
    if "ce" in arms:
        return "ce"
    e = res.experiments[res.experiments["experiment"] == experiment]
    overrides = (e.iloc[0]["arms"] or {}) if not e.empty else {}
    for arm, o in overrides.items():
        if arm in arms and o.get("lico.alpha") == 0 and o.get("lico.beta") == 0:
            return arm
    return None


def experiment_report(res: Results, experiment: str, metrics: Optional[Sequence[str]] = None,
                      baseline: Optional[str] = None, level: float = 0.95, method: str = "t") -> ExperimentReport:
    r = res.experiment(experiment)
    usable = r.usable
    metrics = [m for m in (metrics or default_metrics(r, experiment))]
    missing = [m for m in metrics if m not in r.trials.columns]
    if missing:
        raise KeyError(f"{experiment}: no trial reported {', '.join(missing)}; reported metrics: "
                       f"{', '.join(r.metrics) or 'none'}")
    modes = {m: r.mode(m, experiment) for m in metrics}
    spec_arms = list((r.experiments.iloc[0]["arms"] or {}) if not r.experiments.empty else {})
    present = list(dict.fromkeys(usable["arm"])) if not usable.empty else []
    arms = [a for a in spec_arms if a in present] + sorted(a for a in present if a not in spec_arms)
    if baseline is not None and arms and baseline not in arms:
        raise KeyError(f"{experiment}: --baseline '{baseline}' is not an arm with finished trials; "
                       f"arms: {', '.join(arms)}")
    baseline = baseline if baseline is not None else pick_baseline(res, experiment, arms)
    if baseline in arms:
        arms = [baseline] + [a for a in arms if a != baseline]
    datasets = sorted(set(usable["dataset"].dropna())) if not usable.empty else []
    summary = aggregate(usable, metrics, by=("arm", "dataset"), level=level, method=method)
    paired = paired_vs_baseline(usable, metrics, baseline, level=level) if baseline else \
        paired_vs_baseline(usable.iloc[0:0], metrics)
    best = best_configs(usable, modes, r.params.get(experiment, []), level=level, method=method)
    t = r.trials
    errors = [{"trial": x["trial_dir"], "arm": x["arm"], "dataset": x["dataset"], "seed": _plain(x["seed"]),
               "error": x["error"] or "(no reason recorded)"} for _, x in t[t["status"] == "errored"].iterrows()]
    damaged = [{"trial": x["trial_dir"], "warnings": x["warnings"], "usable": bool(x["usable"])}
               for _, x in t[t["damaged"]].iterrows()]
    return ExperimentReport(experiment, metrics, modes, arms, datasets, baseline, level, method, summary, paired,
                            best, status_counts(t), errors, damaged, len(usable))


def _plain(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def build_report(res: Results, experiment: Optional[str] = None, **kwargs) -> list[ExperimentReport]:
    names = [experiment] if experiment else list(res.experiments["experiment"])
    if experiment and experiment not in set(res.experiments["experiment"]):
        raise KeyError(f"no experiment '{experiment}' under {res.root}; there are: "
                       f"{', '.join(res.experiments['experiment']) or 'none'}")
    return [experiment_report(res, n, **kwargs) for n in names]


# ----------------------------------------------------------------------------- rendering


def _md_table(df: pd.DataFrame, index: bool = False) -> str:
    if index:
        df = df.reset_index()
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in r.tolist()) + " |")
    return "\n".join(lines)


def to_markdown(reports: list[ExperimentReport], root: str = "", warnings: Sequence[str] = ()) -> str:
    out = []
    for rep in reports:
        counts = ", ".join(f"{n} {s}" for s, n in rep.counts.items())
        out.append(f"## {rep.experiment}\n\n{sum(rep.counts.values())} trials: {counts}.")
        if rep.summary.empty:
            out.append("No finished trial with intact results yet: nothing to tabulate.")
        else:
            out.append(f"### Ablation table\n\n{_md_table(rep.ablation_table(bold='md'), index=True)}\n\n"
                       f"{rep.caption()}")
            if rep.baseline:
                out.append(f"### Paired differences against `{rep.baseline}` (matched seeds)\n\n"
                           + (_md_table(rep.paired_table()) if not rep.paired.empty else
                              "No arm shares seeds with the baseline.")
                           + f"\n\nMean difference arm − {rep.baseline} with its {rep.pct} t interval; paired "
                             f"t-test p, Holm-adjusted over the arms of each row group; Wilcoxon signed-rank only "
                             f"with n ≥ 6.")
            else:
                out.append("No baseline arm (no 'ce' arm and none with lico.alpha = lico.beta = 0): "
                           "no paired differences; pass --baseline ARM.")
            out.append(f"### Best configuration per metric\n\n{_md_table(rep.best_table())}\n\n"
                       f"Best mean over seeds of each configuration (arm and the searched values that vary, "
                       f"except the seed).")
        if rep.errors:
            out.append("### Errored trials\n\n" + "\n".join(
                f"- `{e['trial']}` (arm {e['arm']}, dataset {e['dataset']}, seed {e['seed']}): {e['error']}"
                for e in rep.errors))
        if rep.damaged:
            out.append("### Damaged trials\n\n" + "\n".join(
                f"- ⚠ `{d['trial']}`: {d['warnings']}" for d in rep.damaged))
    if not reports:
        out.append(f"No experiments under {root}.")
    other = [w for w in warnings if "/" not in w.split(":")[0]]
    if other:
        out.append("### Warnings\n\n" + "\n".join(f"- {w}" for w in other))
    return "\n\n".join(out) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\textbf{", "\x00"), ("\\", r"\textbackslash{}"), ("\x00", "\\textbf{"), ("_", r"\_"),
                 ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("±", r"$\pm$"), ("−", "$-$"), ("–", "--"),
                 ("≥", r"$\geq$"), ("·", "/"), ("<", r"$<$")):
        text = text.replace(a, b)
    return text


def _latex_table(df: pd.DataFrame, caption: str, label: str) -> str:
    cols = [str(c) for c in df.columns]
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "c" * (len(cols) - 1) + "}",
             r"\toprule", " & ".join(_latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for _, r in df.iterrows():
        lines.append(" & ".join(_latex_escape(str(v)) for v in r.tolist()) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{_latex_escape(caption)}}}", f"\\label{{{label}}}",
              r"\end{table}"]
    return "\n".join(lines)


def to_latex(reports: list[ExperimentReport]) -> str:
    """booktabs tables (\\usepackage{booktabs})."""
    out = []
    for rep in reports:
        if rep.summary.empty:
            out.append(f"% {rep.experiment}: no finished trial with intact results")
            continue
        key = "".join(ch if ch.isalnum() else "-" for ch in rep.experiment)
        out.append(_latex_table(rep.ablation_table(bold="latex").reset_index(), rep.caption(), f"tab:{key}-ablation"))
        if rep.baseline and not rep.paired.empty:
            out.append(_latex_table(rep.paired_table().drop(columns=["note"]),
                                    f"Paired differences against {rep.baseline} on matched seeds "
                                    f"({rep.pct} t interval; paired t-test, Holm-adjusted).", f"tab:{key}-paired"))
        if not rep.best.empty:
            out.append(_latex_table(rep.best_table().drop(columns=["trials"]),
                                    "Best configuration per metric (mean over seeds).", f"tab:{key}-best"))
    return "\n\n".join(out) + "\n"


def _records(df: pd.DataFrame) -> list[dict]:
    out = []
    for r in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else _plain(v) if not isinstance(
            v, (list, dict, tuple)) else v) for k, v in r.items()})
    return out


def to_json(reports: list[ExperimentReport]) -> str:
    data = []
    for rep in reports:
        summary = rep.summary.copy()
        summary["best"] = [a in rep.best_arms(d, m) for a, d, m in zip(summary["arm"], summary["dataset"],
                                                                       summary["metric"])]
        data.append({"experiment": rep.experiment, "metrics": rep.modes, "arms": rep.arms, "datasets": rep.datasets,
                     "baseline": rep.baseline, "ci": {"level": rep.level, "method": rep.method},
                     "status_counts": rep.counts, "usable_trials": rep.n_usable, "ablation": _records(summary),
                     "paired": _records(rep.paired), "best": _records(rep.best), "errors": rep.errors,
                     "damaged": rep.damaged})
    return json.dumps({"experiments": data}, indent=2, default=str) + "\n"


def to_csv(reports: list[ExperimentReport]) -> str:
    """One tidy CSV: a `table` column says which table a row belongs to (ablation, paired, best)."""
    frames = []
    for rep in reports:
        s = rep.summary.copy()
        s["best"] = [a in rep.best_arms(d, m) for a, d, m in zip(s["arm"], s["dataset"], s["metric"])]
        s.insert(0, "table", "ablation")
        p = rep.paired.drop(columns=["seeds"]).copy()
        p.insert(0, "table", "paired")
        b = rep.best.copy()
        b["config"] = [json.dumps(c) for c in b["config"]]
        b["trials"] = [" ".join(t) for t in b["trials"]]
        b.insert(0, "table", "best")
        for f in (s, p, b):
            f.insert(1, "experiment", rep.experiment) if "experiment" not in f.columns else None
            frames.append(f)
    frames = [f for f in frames if not f.empty]
    if not frames:
        return "table,experiment\n"
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


def render(reports: list[ExperimentReport], fmt: str = "md", root: str = "", warnings: Sequence[str] = ()) -> str:
    if fmt == "md":
        return to_markdown(reports, root, warnings)
    if fmt == "latex":
        return to_latex(reports)
    if fmt == "json":
        return to_json(reports)
    if fmt == "csv":
        return to_csv(reports)
    raise ValueError(f"format '{fmt}': use one of {', '.join(FORMATS)}")
