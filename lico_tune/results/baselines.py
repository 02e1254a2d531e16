"""The baselines of a report and its paired-differences table.

A report compares every arm with one or more baseline arms (`--baseline ce --baseline lico`).
The first baseline leads (first row of the ablation table, the bold rule); the paired table holds
every (arm, baseline) comparison, baseline by baseline, without repeating a pair the other way
round (lico − ce under ce: no ce − lico under lico), and the family-wise correction runs over all
its rows together, whatever the baseline (`stats.correct_family`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import pandas as pd

from .resolution import add_image_intervals
from .stats import PAIRED_COLUMNS, correct_family, paired_vs_baseline
from .table import Results


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


def resolve_baselines(res: Results, experiment: str, arms: Sequence[str],
                      baseline: Union[None, str, Sequence[str]]) -> list[str]:
    """The baselines asked for (a name or a list, repeats dropped), each checked against the arms
    with finished trials (KeyError naming the unknown one); none asked: `pick_baseline`'s, if any."""
    asked = [baseline] if isinstance(baseline, str) else list(dict.fromkeys(baseline or ()))
    for b in asked:
        if arms and b not in arms:
            raise KeyError(f"{experiment}: --baseline '{b}' is not an arm with finished trials; "
                           f"arms: {', '.join(arms)}")
    if asked:
        return asked
    picked = pick_baseline(res, experiment, arms)
    return [picked] if picked is not None else []


def paired_section(usable: pd.DataFrame, metrics: Sequence[str], baselines: Sequence[str], level: float,
                   margins: dict[str, float], correction: str, family: str) -> pd.DataFrame:
    """Every arm against each baseline in turn (PAIRED_COLUMNS, one row per experiment, dataset,
    metric, arm and baseline), the arms that are earlier baselines left out (that pair is already
    in the table, the other way round), then corrected over `family` across all baselines."""
    parts = []
    for i, base in enumerate(baselines):
        p = paired_vs_baseline(usable, metrics, base, level=level, margins=margins)
        parts.append(p[~p["arm"].isin(baselines[:i])])
    parts = [p for p in parts if not p.empty]
    paired = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PAIRED_COLUMNS)
    if not paired.empty:
        paired = add_image_intervals(paired, usable, level)  # accuracy pairs: seeds x test images too
    return correct_family(paired, correction, family)


def names(baselines: Sequence[str], quote: str = "`") -> str:
    """'`ce`', '`ce` and `lico`', '`a`, `b` and `c`'."""
    q = [f"{quote}{b}{quote}" for b in baselines]
    return q[0] if len(q) == 1 else f"{', '.join(q[:-1])} and {q[-1]}"
