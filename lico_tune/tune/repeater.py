"""`search.repeats`: every configuration the searcher proposes runs on N seeds.

`SeedRepeater` is Ray's `Repeater` (it asks the wrapped searcher once per group of N trials, hands
the same config to all N with `__trial_index__` = 0..N-1, which `resolve_trial` turns into
`train.seed + i`) with what Ray's lacks: several metrics (a multi-objective Optuna study), and the
objective the searcher is told once all N finished: the mean over the repeats that reported it,
or with `lcb` the pessimistic end of the 95% t interval, mean - t(0.975, n-1) * sd / sqrt(n) for a
maximised metric (+ for a minimised one; one finite value: that value). A group whose repeats all
failed is reported to the searcher as an error.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from ray.tune.search import Repeater
from ray.tune.search.repeater import TRIAL_INDEX as RAY_TRIAL_INDEX

from ..keys import TRIAL_INDEX

assert RAY_TRIAL_INDEX == TRIAL_INDEX, "Ray renamed the repeat index key; update lico_tune.keys"


def repeat_objective(values: list[float], mode: str, objective: str) -> float:
    """What the searcher is told about one configuration from its repeats' values (NaN = missing)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not len(x):
        return float("nan")
    mean = float(x.mean())
    if objective == "mean" or len(x) < 2:
        return mean
    from scipy import stats
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean - half if mode == "max" else mean + half


class SeedRepeater(Repeater):
    def __init__(self, searcher, repeat: int, metrics: list[str], modes: list[str], objective: str = "mean"):
        super().__init__(searcher, repeat=repeat, set_index=True)
        self.metrics, self.modes, self.objective = list(metrics), list(modes), objective
        self._scores: dict[str, dict[str, dict]] = {}       # primary trial id -> trial id -> {metric: value}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass   # intermediate results of single repeats are not a configuration's objective

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False, **kwargs):
        group = self._trial_id_to_group.get(trial_id)
        if group is None:
            return
        values = {m: (float(result[m]) if result and isinstance(result.get(m), (int, float)) else float("nan"))
                  for m in self.metrics}
        scores = self._scores.setdefault(group.primary_trial_id, {})
        scores[trial_id] = values
        group.report(trial_id, 0.0)          # the group's bookkeeping: this repeat is done
        if not group.finished_reporting():
            return
        told = {m: repeat_objective([s[m] for s in scores.values()], mode, self.objective)
                for m, mode in zip(self.metrics, self.modes)}
        failed = any(math.isnan(v) for v in told.values())
        self.searcher.on_trial_complete(group.primary_trial_id, result=None if failed else told, error=failed)
