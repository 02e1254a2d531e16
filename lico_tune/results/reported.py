"""What a trial reported: result.json's rows -> per-epoch metrics, each metric's direction, and the
values that cannot be measurements.

A reported value that cannot be a measurement (infinite; NaN at a finished trial's end, where every
key is computed; an accuracy outside 0-100%) is left out of the trial's metrics with a warning
naming the key (`implausible_values`), so no mean or best configuration rests on it.
"""
from __future__ import annotations

import math
import re
from typing import Any, Optional

from ..keys import ACCURACY_RANGE, is_accuracy
from ..layout import RESULT_FILE
from ..storage.safe_files import parse_json

_MIN_PATTERNS = re.compile(r"(loss|^train/(ce|mm|ot)$|deletion|seconds|time)")


def metric_mode(name: str, declared: Optional[dict] = None) -> str:
    """'max' or 'min': the spec's search.metrics when it names the metric, else by name
    (losses, deletion AUC and times are minimised; accuracy and the other saliency scores maximised)."""
    if declared and name in declared:
        return declared[name]
    return "min" if _MIN_PATTERNS.search(name) else "max"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def implausible_values(rows: list[dict], finished: bool) -> dict[str, str]:
    """{key: why} for the values of a trial's reported rows that cannot be measurements: infinite
    ones, accuracies outside ACCURACY_RANGE, and NaN in a finished trial's last row (earlier rows
    are NaN-padded by design until a key is computed). The first such row of each key is named."""
    bad: dict[str, str] = {}
    lo, hi = ACCURACY_RANGE
    for i, row in enumerate(rows):
        epoch = row.get("epoch", row.get("training_iteration", i + 1))
        for k, v in row.items():
            if "/" not in k or not isinstance(v, (int, float)) or isinstance(v, bool) or k in bad:
                continue
            if math.isinf(v):
                bad[k] = f"{k} is {v} at epoch {epoch}"
            elif math.isnan(v) and finished and i == len(rows) - 1:
                bad[k] = f"{k} is NaN at the end (epoch {epoch})"
            elif is_accuracy(k) and not math.isnan(v) and not lo <= v <= hi:
                bad[k] = f"{k} is {v:g} at epoch {epoch}, outside {lo:g}-{hi:g}%"
    return bad


def epoch_metrics(row: dict) -> dict:
    """The numeric metrics of one reported result ('test/acc', 'train/ce', ...) and its epoch."""
    out = {k: v for k, v in row.items() if "/" in k and _number(v)}
    epoch = row.get("epoch", row.get("training_iteration"))
    if _number(epoch):
        out["epoch"] = epoch
    return out


def once_per_epoch(history: list[dict]) -> list[dict]:
    """The history without re-reports: a trial resumed from its final checkpoint reports its recorded
    final metrics again (tune/trainable.py), so result.json repeats that epoch's row; a row equal to
    the one before it in every metric is dropped (a retrained epoch differs, in its timings at least)."""
    out: list[dict] = []
    for m in history:
        if not (out and m == out[-1]):
            out.append(m)
    return out


def read_results(text: str) -> tuple[list[dict], Optional[str]]:
    """Rows of result.json and a warning when a line cannot be parsed (a cut-off write)."""
    rows, problem = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
            if not isinstance(row, dict):
                raise ValueError("not an object")
            rows.append(row)
        except ValueError:
            where = "its last line" if i == len(lines) - 1 else f"line {i + 1}"
            problem = (f"{RESULT_FILE} is truncated or corrupt ({where} is not valid JSON; "
                       f"{len(rows)} epoch(s) read)")
            break
    return rows, problem
