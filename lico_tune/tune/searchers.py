"""The plan's search algorithm and scheduler as Ray Tune objects.

- grid / random: Tune's BasicVariantGenerator over arms x grid axes x sampled distributions.
- optuna: `LicoOptunaSearch` (Ray's OptunaSearch that skips results lacking the metric) over
  `OptunaCells` (the crossed cells assigned round-robin, the sampled fields proposed by TPE), the
  study in a real Optuna storage (`Plan.optuna_url`).
- FIFO, or ASHA on the single metric with `epoch` as time.
- search.repeats N > 1: grid gets a repeat axis `__trial_index__` = 0..N-1; optuna (and random,
  then through Optuna's RandomSampler, so that one proposal can be repeated) are wrapped in
  `SeedRepeater`, which runs each proposal N times and tells the searcher their mean (or LCB).
"""
from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from ..keys import TRIAL_INDEX
from ..layout import OPTUNA_FILE, driver_study_file
from ..plan import Plan
from .generator import LicoSearchGenerator, LicoVariantGenerator
from .repeater import SeedRepeater


def _has(result: dict, metric: str) -> bool:
    """The result carries a value of the metric (a trial's first report holds NaN for the metrics
    it computes later: see train.train_trial)."""
    value = result.get(metric)
    return value is not None and not (isinstance(value, float) and math.isnan(value))


class LicoASHA(ASHAScheduler):
    """ASHA that ignores results without a value of its metric (NaN-padded first reports)."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if not _has(result, self._metric):
            return FIFOScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


class LicoOptunaSearch(OptunaSearch):
    """OptunaSearch that skips intermediate results lacking the metric (with `eval.every` > 1, or
    saliency metrics that only come at the end), names the study's objectives after the spec's
    metrics (optuna-dashboard shows 'test/acc', not 'Objective 0') and records each Optuna trial's
    Ray trial id as a user attribute (next to the arm and cell that `OptunaCells` sets)."""

    def _setup_study(self, mode):
        super()._setup_study(mode)
        names = [self._metric] if isinstance(self._metric, str) else list(self._metric)
        self._ot_study.set_metric_names(names)

    def suggest(self, trial_id: str):
        params = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        return params

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False):
        if trial_id not in self._ot_trials:
            return     # a trial the restored searcher never handed out (generator.py: pieces of two saves)
        super().on_trial_complete(trial_id, result=result, error=error)

    def on_trial_result(self, trial_id: str, result: dict):
        if isinstance(self.metric, str) and not _has(result, self.metric):
            return
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return
        if self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished():
            return     # told before its driver was killed, and now reporting its final metrics again (recover.py)
        super().on_trial_result(trial_id, result)

    # The study of an experiment on cloud storage lives in an SQLite file on the driver
    # (Plan.study_on_driver: under ~/.cache; `lico_study_file` set). So that `resume` works from any
    # machine: each save puts a copy of it, OPTUNA_FILE, into Ray's staging folder (uploaded with
    # the state), `resume` brings it back to this machine's cache (run.py), and this searcher's
    # pickles (tuner.pkl, searcher-state-*.pkl) hold no path: the storage, study and trials
    # (whose unpickling would open the first driver's ~/.cache path) are dropped and reopened from
    # this machine's cache when unpickled.
    def _portable(self, state: dict) -> dict:
        if not state.get("lico_study_file"):
            return state
        state = dict(state, _storage=None, _ot_study=None, lico_portable=True,
                     _ot_trials={tid: t._trial_id for tid, t in (state.get("_ot_trials") or {}).items()})
        return state

    def _reopen(self) -> None:
        if not self.__dict__.pop("lico_portable", False):
            return
        import optuna
        self.lico_study_file = str(driver_study_file(self._study_name))   # the study name is the experiment's
        Path(self.lico_study_file).parent.mkdir(parents=True, exist_ok=True)
        self._storage = optuna.storages.RDBStorage(f"sqlite:///{self.lico_study_file}")
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage,
                                           sampler=self._sampler, pruner=optuna.pruners.NopPruner())
        self._ot_trials = {tid: optuna.trial.Trial(self._ot_study, n) for tid, n in self._ot_trials.items()
                           if _in_study(self._storage, n)}    # the study copy may be from an earlier save

    def __getstate__(self):
        return self._portable(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reopen()

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self._portable(self.__dict__.copy()), f)
        local = getattr(self, "lico_study_file", None)
        if local and Path(local).is_file():
            copy_study(Path(local), Path(checkpoint_path).parent / OPTUNA_FILE)

    def restore(self, checkpoint_path: str):
        super().restore(checkpoint_path)
        self._reopen()


def _in_study(storage, trial_id: int) -> bool:
    try:
        storage.get_trial(trial_id)
        return True
    except KeyError:
        return False


def copy_study(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite study (sqlite3's backup API), replacing target atomically."""
    import sqlite3
    tmp = target.with_name(target.name + ".tmp")
    src, dst = sqlite3.connect(source), sqlite3.connect(tmp)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    os.replace(tmp, target)


class OptunaCells:
    """Optuna define-by-run space: samples the sampled fields and assigns the crossed cell
    round-robin (trial k gets cell k mod n). The counter is part of the searcher's state, so a
    restored experiment continues the same assignment; a resume gives back the cells of proposals
    that never ran (`requeue`: they come next) and moves past those of trials the searcher did not
    hand out (`skip`), as generator.py finds them."""

    def __init__(self, sampled: dict[str, tuple[str, list]], cells: list[dict]):
        self.sampled, self.cells = sampled, cells
        self.assigned = 0
        self.queue: list[dict] = []

    def requeue(self, cell: dict) -> None:
        self.__dict__.setdefault("queue", []).append(dict(cell))

    def skip(self, n: int) -> None:
        self.assigned += n

    def _next_cell(self) -> dict:
        queue = self.__dict__.setdefault("queue", [])     # absent in the pickles of earlier versions
        if queue:
            return queue.pop(0)
        cell = self.cells[self.assigned % len(self.cells)]
        self.assigned += 1
        return cell

    def __call__(self, trial) -> dict:
        for path, (kind, args) in self.sampled.items():
            if kind == "uniform":
                trial.suggest_float(path, args[0], args[1])
            elif kind == "loguniform":
                trial.suggest_float(path, args[0], args[1], log=True)
            elif kind == "quniform":
                trial.suggest_float(path, args[0], args[1], step=args[2])
            elif kind == "randint":
                trial.suggest_int(path, args[0], args[1] - 1)
            else:
                trial.suggest_categorical(path, args)
        cell = self._next_cell()
        for key, value in cell.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("cell", dict(cell))   # the whole crossed cell, e.g. {arm, train.seed}
        return dict(cell)


def _domain(kind: str, args: list):
    return {"grid": tune.grid_search, "choice": tune.choice}[kind](list(args)) if kind in ("grid", "choice") \
        else {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint,
              "quniform": tune.quniform}[kind](*args)


def search_algorithm(plan: Plan):
    """(search_alg, param_space, num_samples) for the Tuner."""
    s = plan.spec.search
    if s.algorithm == "grid" or (s.algorithm == "random" and s.repeats == 1):
        space: dict[str, Any] = {}
        if plan.arms:
            space["arm"] = _domain("grid", list(plan.arms))
        for path, values in plan.grid.items():
            space[path] = _domain("grid", values)
        for path, (kind, args) in plan.sampled.items():
            space[path] = _domain(kind, args)
        if s.repeats > 1:         # grid: the repeats are one more crossed axis (seed = train.seed + i)
            space[TRIAL_INDEX] = _domain("grid", list(range(s.repeats)))
        alg = LicoVariantGenerator(max_concurrent=s.max_concurrent or 0, random_state=0)
        return alg, space, s.num_samples

    import optuna
    metrics, modes = list(plan.metrics), list(plan.metrics.values())
    url = plan.optuna_url
    n_total = plan.n_trials
    if url is None:            # random with repeats: Optuna's RandomSampler, study in memory
        storage, sampler = None, optuna.samplers.RandomSampler(seed=0)
    else:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.RDBStorage(url)
        n_proposals = n_total // s.repeats
        sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=min(10, max(2, n_proposals // 3)))
    alg = LicoOptunaSearch(
        space=OptunaCells(plan.sampled, plan.cells),
        metric=metrics[0] if len(metrics) == 1 else metrics,
        mode=modes[0] if len(modes) == 1 else modes,
        sampler=sampler, study_name=plan.experiment, storage=storage)
    if plan.study_on_driver:       # the default SQLite of an experiment on cloud storage: on the driver
        alg.lico_study_file = str(plan.study_on_driver)
    if s.repeats > 1:
        alg = SeedRepeater(alg, s.repeats, metrics, modes, s.repeat_objective)
    if s.max_concurrent:
        alg = ConcurrencyLimiter(alg, max_concurrent=s.max_concurrent)
    return LicoSearchGenerator(alg), {}, n_total


def scheduler(plan: Plan):
    sc = plan.spec.search.scheduler
    if sc.name == "fifo":
        return FIFOScheduler()
    max_t = max(cfg.train.epochs for cfg in plan.cell_configs)
    return LicoASHA(time_attr="epoch", max_t=max(max_t, sc.grace_period),
                         grace_period=sc.grace_period, reduction_factor=sc.reduction_factor)
