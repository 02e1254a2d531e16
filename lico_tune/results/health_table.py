"""The health summary of an ablation: per arm and dataset, the mean final value of the key health
metrics of the LICO terms (lico_tune/train/health.py) and how many trials raised each warning.

A LICO arm can match the CE arm's accuracy because its extra terms trained nothing (MM inactive,
OT degenerate...); this table says so next to the ablation table. Trials report the warnings as
0/1 metrics `health/warn/<kind>` (1 once raised); a CE arm has no LICO terms and no LICO health
metrics, but every arm reports at its end whether the explained model learned anything
(lico_tune/train/chance.py: `health/warn/at_chance`, `health/warn/collapsed`), and `chance_cells` /
`chance_note` say which arms and datasets have trials at chance. Experiments trained before that
check lack the flags: their cells count nothing there (not reported, no note).
"""
from __future__ import annotations

from typing import Optional

import pandas as pd

from ..keys import (AT_CHANCE_FLAG, CHANCE_ALPHA, MM_REF_CHANGE, TEXT_COS_BETWEEN, WARN_PREFIX, dose, grad_frac,
                    old_grad_share)

# (column shown, metric): what moved (MM at a fixed temperature), what trained the backbone (each
# term's fraction of the squared gradient norm at the features), MM's dose at initialisation, and
# whether OT's targets still tell the classes apart.
KEY_METRICS = [("mm_ref_change", MM_REF_CHANGE), ("grad² ce", grad_frac("ce")),
               ("grad² mm", grad_frac("mm")), ("grad² ot", grad_frac("ot")),
               ("dose0 mm", dose("mm", True)), ("OT cos between", TEXT_COS_BETWEEN)]
# Experiments trained before fidelity v2 (main 881e152 and older) report, instead of the gradient
# fractions and doses, a ratio of norms averaged with the untrained model: their table shows that,
# under its own name.
LEGACY_METRICS = [("mm_ref_change", MM_REF_CHANGE), ("|grad| share ce (old)", old_grad_share("ce")),
                  ("|grad| share mm (old)", old_grad_share("mm")), ("|grad| share ot (old)", old_grad_share("ot"))]


def key_metrics(usable: pd.DataFrame) -> list[tuple[str, str]]:
    """The columns of the health table: KEY_METRICS, or LEGACY_METRICS for trials of the older kind."""
    old = any(m in usable.columns for _, m in LEGACY_METRICS[1:])
    new = any(m in usable.columns for _, m in KEY_METRICS[1:])
    return LEGACY_METRICS if old and not new else KEY_METRICS


def health_table(usable: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, dataset) of finished trials: trials, the key metrics' means (NaN where no
    trial reported them) and 'warnings': '<kind> k/n' for each warning raised by k of n trials,
    'none' when no trial raised one, '-' when the arm reports no health metrics."""
    metrics = key_metrics(usable)
    cols = ["arm", "dataset", "trials"] + [c for c, _ in metrics] + ["warnings"]
    if usable.empty or not any(c.startswith("health/") for c in usable.columns):
        return pd.DataFrame(columns=cols)
    warn_cols = [c for c in usable.columns if c.startswith(WARN_PREFIX)]
    rows = []
    for (arm, dataset), g in usable.groupby(["arm", "dataset"], sort=False, dropna=False):
        row = {"arm": arm, "dataset": dataset, "trials": len(g)}
        for name, metric in metrics:
            row[name] = pd.to_numeric(g[metric], errors="coerce").mean() if metric in g.columns else float("nan")
        flags = {c: pd.to_numeric(g[c], errors="coerce") for c in warn_cols}
        reported = [c for c, v in flags.items() if v.notna().any()]
        raised = [f"{c[len(WARN_PREFIX):].replace('_', ' ')} {int((flags[c] > 0).sum())}/{int(flags[c].notna().sum())}"
                  for c in reported if (flags[c] > 0).any()]
        row["warnings"] = ", ".join(raised) if raised else ("none" if reported else "-")
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


HEALTH_CAPTION = ("Mean final health of the LICO terms over finished trials: mm_ref_change = relative change of "
                  "MM at a fixed temperature since the start (negative: the image manifold moved towards the "
                  "text one); grad² ce/mm/ot = each weighted term's fraction of the squared gradient norm at the "
                  "backbone's feature map, over the last epoch's probes (near 0: the term trains nothing; '-': the "
                  "arm has no LICO terms); dose0 mm = |gradient of alpha*MM| / |gradient of CE| there on the "
                  "untrained model; OT cos between = mean cosine between OT's text points of different classes "
                  "(near 1: OT's targets no longer tell the classes apart); experiments trained before these were "
                  "measured show '|grad| share (old)', a ratio of gradient norms. Warnings: how many trials raised each "
                  "(the LICO terms' health checks; 'at chance' and 'collapsed', the chance check, for every arm); "
                  "'-': the arm's trials report no health flags (trained before these checks).")


def chance_cells(usable: pd.DataFrame) -> list[dict]:
    """{arm, dataset, k, n, trials} for each (arm, dataset) where k of the n trials that report the flag
    `health/warn/at_chance` raised it (k >= 1), `trials` their ids (where the frame has `trial_id`).
    Trials without the flag (older runs) count in neither."""
    if usable.empty or AT_CHANCE_FLAG not in usable.columns:
        return []
    out = []
    for (arm, dataset), g in usable.groupby(["arm", "dataset"], sort=False, dropna=False):
        at_chance = pd.to_numeric(g[AT_CHANCE_FLAG], errors="coerce")
        hit = g[at_chance > 0]
        if len(hit):
            trials = [str(t) for t in hit["trial_id"]] if "trial_id" in g.columns else []
            out.append({"arm": arm, "dataset": dataset, "k": len(hit), "n": int(at_chance.notna().sum()),
                        "trials": trials})
    return out


def chance_note(cells: list[dict]) -> Optional[str]:
    """One plain paragraph naming the arms, datasets and trials at chance, or None."""
    if not cells:
        return None
    where = ", ".join(f"{c['arm']} · {c['dataset']}: {c['k']}/{c['n']} trials"
                      + (f" ({', '.join(c['trials'])})" if c.get("trials") else "") for c in cells)
    return (f"⚠ At chance: {where}. There the explained model's test accuracy is not above always answering the "
            f"most frequent class (one-sided exact binomial test, α = {CHANCE_ALPHA:g}): the model learned "
            f"nothing, so its saliency and pointing numbers, and the paired comparisons of them below, are not "
            f"evidence about LICO. Train longer or check the learning rate.")


def health_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its numbers as text (3 significant digits, '-' where missing)."""
    shown = table.copy()
    for name in dict.fromkeys(c for c, _ in KEY_METRICS + LEGACY_METRICS if c in shown.columns):
        shown[name] = [("-" if pd.isna(v) else f"{v:+.3g}" if name == "mm_ref_change" else f"{v:.3g}")
                       for v in shown[name]]
    return shown


__all__ = ["HEALTH_CAPTION", "KEY_METRICS", "LEGACY_METRICS", "key_metrics", "chance_cells", "chance_note", "health_display", "health_table"]
