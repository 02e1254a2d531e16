"""Rendering of ablation reports (report.py) as Markdown, LaTeX (booktabs), JSON or one tidy CSV."""
from __future__ import annotations

import json
import math
from typing import Sequence

import pandas as pd

from .health_table import HEALTH_CAPTION, health_display
from .report import FORMATS, ExperimentReport
from .stats import plain_value
from .table import Notice
from . import report_text as prose

__all__ = ["FORMATS", "render", "to_csv", "to_json", "to_latex", "to_markdown"]


def _md_table(df: pd.DataFrame, index: bool = False) -> str:
    if index:
        df = df.reset_index()
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in r.tolist()) + " |")
    return "\n".join(lines)


def _run_line(rep: ExperimentReport) -> str:
    """' The experiment is interrupted (SIGINT): 1 of 3 planned trials started; continue with ...'."""
    run = rep.run or {}
    if not run.get("state"):
        return ""
    started, planned = sum(rep.counts.values()), run.get("planned")
    of = f" {started} of {planned} planned trials started;" if planned and planned > started else ""
    if run["state"] == "interrupted":
        return (f" The experiment is interrupted ({run.get('note')}):{of} continue it with "
                f"`lico-tune resume {run.get('path')}`.")
    if run["state"] == "running":
        return f" The experiment is running ({run.get('note')}).{of.rstrip(';')}"
    return ""


def to_markdown(reports: list[ExperimentReport], root: str = "", warnings: Sequence[Notice] = ()) -> str:
    out = []
    for rep in reports:
        counts = ", ".join(f"{n} {s}" for s, n in rep.counts.items())
        out.append(f"## {rep.experiment}\n\n{sum(rep.counts.values())} trials: {counts}.{_run_line(rep)}")
        if rep.summary.empty:
            out.append("No finished trial with intact results yet: nothing to tabulate.")
        else:
            out += prose.chance_warnings(rep)      # before any table: those cells' saliency numbers mean nothing
            out.append(f"### Ablation table\n\n{_md_table(rep.ablation_table(bold='md'), index=True)}\n\n"
                       f"{prose.caption(rep)}")
            if rep.baseline:
                several = len(rep.baselines) > 1
                out.append(f"### Paired differences against {rep.against()} (matched seeds)\n\n"
                           + (_md_table(rep.paired_table()) if not rep.paired.empty else
                              f"No arm shares seeds with the baseline{'s' if several else ''}.")
                           + f"\n\nMean difference arm − {'baseline' if several else rep.baseline} with its "
                             f"{rep.pct} t interval (clipped to "
                             f"the difference's range); paired t-test p, {prose.correction_text(rep)}Verdict at "
                             f"α = {rep.alpha:.2g} after the correction: higher/lower, equivalent (TOST within "
                             f"the margin, `--margin`), or inconclusive. Wilcoxon signed-rank only with n ≥ 6."
                           + (" A pair compared under an earlier baseline is not repeated the other way round."
                              if several else "")
                           + (f" {prose.resolution_text(rep)}" if prose.resolution_text(rep) else "")
                           + (f"\n\n{prose.mde_text(rep)}" if prose.mde_text(rep) else ""))
            else:
                out.append("No baseline arm (no 'ce' arm and none with lico.alpha = lico.beta = 0): "
                           "no paired differences; pass --baseline ARM.")
            if not rep.health.empty:
                out.append(f"### Health of the LICO terms\n\n{_md_table(health_display(rep.health))}\n\n"
                           f"{HEALTH_CAPTION}")
            notes = prose.small_n_warnings(rep)
            if notes:
                out.append("### Small-n warnings\n\n" + "\n".join(f"- {w}" for w in notes))
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
    other = [w for w in warnings if w.trial is None]   # a trial's are listed above (damaged trials)
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
        out += [f"% {w}" for w in prose.chance_warnings(rep)]
        out.append(_latex_table(rep.ablation_table(bold="latex").reset_index(), prose.caption(rep), f"tab:{key}-ablation"))
        if rep.baseline and not rep.paired.empty:
            out.append(_latex_table(rep.paired_table().drop(columns=["note"]),
                                    f"Paired differences against {rep.against('')} on matched seeds "
                                    f"({rep.pct} t interval; paired t-test; {prose.correction_text(rep)}"
                                    f"{prose.mde_text(rep)}", f"tab:{key}-paired"))
        if not rep.best.empty:
            out.append(_latex_table(rep.best_table().drop(columns=["trials"]),
                                    "Best configuration per metric (mean over seeds).", f"tab:{key}-best"))
    return "\n\n".join(out) + "\n"


def _records(df: pd.DataFrame) -> list[dict]:
    out = []
    for r in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else plain_value(v) if not isinstance(
            v, (list, dict, tuple)) else v) for k, v in r.items()})
    return out


def to_json(reports: list[ExperimentReport]) -> str:
    data = []
    for rep in reports:
        summary = rep.summary.copy()
        summary["best"] = [a in rep.best_arms(d, m) for a, d, m in zip(summary["arm"], summary["dataset"],
                                                                       summary["metric"])]
        summary["bold"] = [a in rep.bold_arms(d, m) for a, d, m in zip(summary["arm"], summary["dataset"],
                                                                       summary["metric"])]
        paired = rep.paired.copy()
        paired["verdict"] = [rep.verdict(r) for r in paired.to_dict(orient="records")]
        data.append({"experiment": rep.experiment, "metrics": rep.modes, "arms": rep.arms, "datasets": rep.datasets,
                     "baseline": rep.baseline, "ci": {"level": rep.level, "method": rep.method},
                     "correction": {"method": rep.correction, "family": rep.family, "tests": rep.family_n},
                     "margins": rep.margins, "small_n_warnings": prose.small_n_warnings(rep),
                     "at_chance": rep.at_chance, "chance_warnings": prose.chance_warnings(rep),
                     "status_counts": rep.counts, "run_state": (rep.run or {}).get("state"),
                     "run_note": (rep.run or {}).get("note"), "planned_trials": (rep.run or {}).get("planned"),
                     "usable_trials": rep.n_usable, "ablation": _records(summary),
                     "paired": _records(paired), "best": _records(rep.best), "health": _records(rep.health),
                     "errors": rep.errors,
                     "damaged": rep.damaged})
    return json.dumps({"experiments": data}, indent=2, default=str) + "\n"


def to_csv(reports: list[ExperimentReport]) -> str:
    """One tidy CSV: a `table` column says which table a row belongs to (ablation, paired, best)."""
    frames = []
    for rep in reports:
        s = rep.summary.copy()
        s["best"] = [a in rep.best_arms(d, m) for a, d, m in zip(s["arm"], s["dataset"], s["metric"])]
        s["bold"] = [a in rep.bold_arms(d, m) for a, d, m in zip(s["arm"], s["dataset"], s["metric"])]
        s.insert(0, "table", "ablation")
        p = rep.paired.drop(columns=["seeds"]).copy()
        p["verdict"] = [rep.verdict(r) for r in rep.paired.to_dict(orient="records")]
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


def render(reports: list[ExperimentReport], fmt: str = "md", root: str = "", warnings: Sequence[Notice] = ()) -> str:
    if fmt == "md":
        return to_markdown(reports, root, warnings)
    if fmt == "latex":
        return to_latex(reports)
    if fmt == "json":
        return to_json(reports)
    if fmt == "csv":
        return to_csv(reports)
    raise ValueError(f"format '{fmt}': use one of {', '.join(FORMATS)}")
