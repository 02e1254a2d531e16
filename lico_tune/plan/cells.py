"""Spec -> plan: the cells, the checks and the smoke-test shrinking of a sweep, without Ray.

`lico-tune validate` and `lico-tune run` both call `plan_search`; `lico_tune.tune` turns the plan
into a ray.tune.Tuner. This module never imports ray.

How a spec becomes trials
-------------------------
* **Cells.** The ablation arms and every `grid` axis of `search.space` are *crossed*: one cell per
  (arm, grid values) combination, e.g. 2 arms x 2 datasets x 3 seeds = 12 cells. Each cell is run
  `search.num_samples` times; the other distributions (`choice`, `uniform`, `loguniform`,
  `randint`, `quniform`) are *sampled* for each of those trials. So `num_samples` is "samples per
  cell" for every algorithm, and the experiment has cells x num_samples trials.
* **grid** and **random**: Tune's BasicVariantGenerator, arms as a grid axis named `arm`. With
  `grid`, `choice` is enumerated like `grid` and continuous distributions are refused.
* **optuna**: TPE through Ray's OptunaSearch. Optuna cannot cross a grid, so the cells are
  assigned round-robin by us (trial k runs cell k mod n_cells, recorded as the Optuna user
  attributes `arm`, `train.seed`, ...) and TPE proposes the sampled fields using every finished
  trial, cells pooled: it optimises the metric averaged over arms and seeds (seeds are noise to
  average out; to tune each arm separately, run one experiment per arm with `--set`). With two or
  more metrics the study is multi-objective (Optuna's TPE is MOTPE then) and the summary prints
  the Pareto front. The study lives in a real database: SQLite `optuna.db` in the experiment
  directory by default (or `search.optuna_storage`, any SQLAlchemy URL, e.g. PostgreSQL), so
  `optuna.load_study(study_name=<experiment>, storage=<url>)` and `optuna-dashboard <url>` open it.
* **Repeats** (`search.repeats: N`, see `selection`): each proposed configuration runs on N seeds,
  `train.seed` + 0..N-1; the searcher is told their mean (or lower confidence bound) once all N
  finished (optuna and random through `tune.repeater.SeedRepeater`, grid as a repeat axis). The
  experiment has cells x num_samples x N trials. ASHA and a `train.seed` axis are refused with it.
* **Selection** on `val/*` only (`selection.check_selection`): `test/*` metrics are refused unless
  `search.allow_test_selection`.
* An arm's overrides are applied after the sampled values: an arm that sets `lico.alpha: 0`
  wins over a searched `lico.alpha`.
* **Schedulers**: FIFO, or ASHA on the single metric with `epoch` as time (ASHA with two metrics
  is refused: Ray's ASHA compares trials on one metric).
* Trials may report a metric only on some epochs (`eval.every`, saliency at the end); Tune's
  strict metric check is off and the searchers and ASHA skip results without the metric.
"""
from __future__ import annotations

import datetime as _dt
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from ..errors import SpecError, first_error
from ..layout import OPTUNA_FILE, RUN_FILE, driver_study_file, stamped
from ..spec import Spec, TrialConfig, saved_trial, validate_spec
from ..spec.checks import check_distribution, check_name, check_optuna_url, check_storage, distribution_bounds
from ..spec.safe_yaml import load_text
from ..storage import is_uri, join, normalise_root
from ..storage.userpaths import check_path
from .inert import Inert, check_inert, inert_fields, inert_notes
from .resolve import resolve_trial
from .selection import check_metric_keys, check_repeats, check_seeds, check_selection

MAX_CHECKED_CELLS = 2000

# --smoke-test: every trial is clamped to at most these values (a min, so smaller spec values stay).
SMOKE_LIMITS = {"train.epochs": 1, "train.steps_per_epoch": 5, "data.train_subset": 512,
                "data.test_subset": 256, "eval.n_images": 8, "eval.gallery_images": 2,
                "eval.rise_n_masks": 50}
SMOKE_SET = {"eval.every": 1, "eval.sanity": False}


@dataclass
class Plan:
    """Everything needed to build the Tuner, in plain data (saved as the experiment's RUN_FILE)."""
    spec: Spec
    experiment: str
    storage: str                                    # absolute local path or a cloud URI
    arms: dict[str, dict[str, Any]]                 # {} when the spec has no ablation
    grid: dict[str, list]                           # crossed axes (path -> values)
    sampled: dict[str, tuple[str, list]]            # path -> (kind, args)
    limits: dict[str, Any] = field(default_factory=dict)   # min-clamps (smoke test)
    force: dict[str, Any] = field(default_factory=dict)    # set after everything (smoke test)
    smoke: bool = False
    # Each cell's resolved, validated config (aligned with `cells`), set by plan_search: the driver's
    # consumers (preflight, the scheduler, the summary, the trackers) read these, never the spec.
    cell_configs: list[TrialConfig] = field(default_factory=list, repr=False)
    # Searched fields that cannot change training in some cells (plan/inert.py), set by plan_search.
    inert: dict[str, Inert] = field(default_factory=dict, repr=False)

    @property
    def notes(self) -> list[str]:
        """What `validate` and `run` print about the plan: the searched fields inert in some cells."""
        return inert_notes(self.inert)

    @property
    def metrics(self) -> dict[str, str]:
        return dict(self.spec.search.metrics)

    @property
    def cells(self) -> list[dict[str, Any]]:
        """Each crossed combination as {'arm': name?, path: value, ...}, arms outermost."""
        axes = ([("arm", list(self.arms))] if self.arms else []) + list(self.grid.items())
        names = [a for a, _ in axes]
        return [dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in axes))]

    @property
    def n_trials(self) -> int:
        s = self.spec.search
        return len(self.cells) * s.num_samples * s.repeats

    @property
    def experiment_path(self) -> str:
        return join(self.storage, self.experiment)

    @property
    def run_file(self) -> str:
        return join(self.experiment_path, RUN_FILE)

    @property
    def optuna_url(self) -> Optional[str]:
        """Where the Optuna study lives: search.optuna_storage, else an SQLite file in the experiment,
        or on the driver for an experiment on cloud storage (study_on_driver)."""
        if self.spec.search.algorithm != "optuna":
            return None
        if self.spec.search.optuna_storage:
            return self.spec.search.optuna_storage
        return f"sqlite:///{self.study_on_driver or Path(self.experiment_path) / OPTUNA_FILE}"

    @property
    def study_on_driver(self) -> Optional[Path]:
        """The driver's SQLite file of an Optuna study whose experiment is on cloud storage (SQLite
        cannot live in a bucket) and whose storage the spec does not name; else None."""
        s = self.spec.search
        if s.algorithm != "optuna" or s.optuna_storage or not is_uri(self.storage):
            return None
        return driver_study_file(self.experiment)

    @property
    def axes(self) -> list[str]:
        """The crossed axes of a cell: 'arm' (when there are arms), then the grid paths."""
        return (["arm"] if self.arms else []) + list(self.grid)

    def trial_config(self, params: dict) -> TrialConfig:
        """The config of a trial with these params (as Ray records them): its cell's resolved config
        when the params hold nothing beyond the cell's axes (a grid sweep: a lookup), else the cell's
        values with the trial's sampled ones and repeat index, resolved as the trainable does."""
        key = [params.get(a) for a in self.axes]
        extra = set(params) - set(self.axes)
        if not extra:
            for cell, cfg in zip(self.cells, self.cell_configs):
                if [cell.get(a) for a in self.axes] == key:
                    return cfg
        return resolve_trial(self.runtime(), params)

    def runtime(self) -> dict:
        """What every trial needs to resolve its config (captured by the trainable)."""
        return {"base": self.spec.base.model_dump(mode="json"), "arms": self.arms,
                "limits": self.limits, "force": self.force}

    def to_yaml(self) -> str:
        from ..provenance import provenance
        return yaml.safe_dump({
            "experiment": self.experiment, "storage": self.storage, "smoke": self.smoke, "n_trials": self.n_trials,
            "arms": self.arms, "grid": self.grid, "limits": self.limits, "force": self.force,
            "optuna_storage": self.optuna_url,
            "created": _dt.datetime.now().isoformat(timespec="seconds"), **provenance(),
            "spec": self.spec.model_dump(mode="json")}, sort_keys=False)

    @classmethod
    def load(cls, experiment_dir: str) -> "Plan":
        """The plan of an experiment directory, wherever it lies now (it may have been moved): the one
        reader of its run file (`resume`, `trust`); SpecError naming the directory or the file."""
        from ..storage import read_text
        d = normalise_root(experiment_dir)
        text = read_text(join(d, RUN_FILE))
        if text is None:
            raise SpecError(f"{d} is not a lico-tune experiment directory: it has no {RUN_FILE}. "
                            f"Pass the directory `lico-tune run` printed (<storage>/<experiment name>).")
        try:
            plan = cls.from_yaml(text)
        except SpecError as exc:
            raise SpecError(f"{join(d, RUN_FILE)}: {exc}") from None
        plan.storage, _, plan.experiment = d.rpartition("/")
        return plan

    @classmethod
    def from_yaml(cls, text: str) -> "Plan":
        data = load_text(text, source=RUN_FILE)
        if not isinstance(data, dict) or not isinstance(data.get("spec"), dict) or "experiment" not in data:
            raise SpecError(f"{RUN_FILE} is damaged: it lacks the experiment's spec or name (it is written by "
                            f"`lico-tune run`). Restore it from a copy or start the experiment again.")
        if isinstance(data["spec"].get("base"), dict):   # saved by the run: read with today's fields
            data["spec"]["base"] = saved_trial(data["spec"]["base"])
        plan = plan_search(validate_spec(data["spec"], source=RUN_FILE), name=data["experiment"],
                           storage=data["storage"], new=False)
        plan.arms, plan.grid = data.get("arms") or {}, data.get("grid") or {}
        plan.limits, plan.force, plan.smoke = data.get("limits") or {}, data.get("force") or {}, data.get("smoke", False)
        plan.cell_configs = _resolve_cells(plan)
        return plan


def grid_and_sampled(spec: Spec) -> tuple[dict[str, list], dict[str, tuple[str, list]]]:
    """The search space split into crossed grid axes (path -> values) and sampled distributions
    (path -> (kind, args)), each distribution's arguments checked. Raises SpecError."""
    s = spec.search
    grid, sampled = {}, {}
    for path, dist in s.space.items():
        (kind, args), = dist.items()
        where = f"search.space.{path}"
        check_distribution(where, path, kind, list(args))
        if kind == "grid" or (kind == "choice" and s.algorithm == "grid"):
            grid[path] = list(args)
            continue
        if s.algorithm == "grid":
            raise SpecError(f"{where}: '{kind}' needs a sampling algorithm; with search.algorithm 'grid' "
                            f"use {{grid: [...]}}, or set search.algorithm to 'random' or 'optuna'.")
        if kind == "choice" and (s.algorithm == "optuna" or (s.algorithm == "random" and s.repeats > 1)):
            bad = [v for v in args if not isinstance(v, (str, int, float, bool)) and v is not None]
            if bad:
                raise SpecError(f"{where}: Optuna's categorical values must be scalars (got {bad[0]!r}); "
                                f"make it a {{grid: [...]}} axis instead.")
        sampled[path] = (kind, list(args))
    return grid, sampled


def plan_search(spec: Spec, name: Optional[str] = None, storage: Optional[str] = None,
                smoke: bool = False, new: bool = True) -> Plan:
    """Check the spec's search section against what Ray Tune supports and build the plan.
    Raises SpecError naming the field and the fix."""
    s = spec.search
    storage = storage or spec.storage
    check_path(storage, "storage")      # before it is expanded: ~nosuchuser, NUL bytes, foo://
    storage = normalise_root(storage)
    if name is None:            # the spec's name is checked by the Spec; the directory adds a date
        name = stamped(spec.name)
    elif new:                   # a plan read back by `resume` names a directory that exists
        check_name(name, "--name")
    arms = dict(spec.ablation or {})
    for arm in arms:
        check_name(arm, "ablation: arm name")
    if new:                     # a plan read back by `resume` names where it was: it may have moved
        check_storage(storage)
    check_optuna_url(s.optuna_storage)

    grid, sampled = grid_and_sampled(spec)
    if s.algorithm == "optuna" and not sampled:
        raise SpecError("search.algorithm 'optuna' needs at least one sampled distribution "
                        "(uniform, loguniform, randint, quniform or choice) in search.space; with only "
                        "grid axes use search.algorithm 'grid'.")
    if s.scheduler.name == "asha" and len(s.metrics) != 1:
        raise SpecError(f"search.scheduler 'asha' with {len(s.metrics)} metrics ({', '.join(s.metrics)}): "
                        f"Ray's ASHA stops trials on one metric. Keep one metric, or use scheduler 'fifo' "
                        f"(a multi-objective search then gives a Pareto front).")
    if not s.metrics:
        raise SpecError("search.metrics: name at least one metric; set it to e.g. {val/acc: max}.")
    check_repeats(spec)

    plan = Plan(spec=spec, experiment=name, storage=storage, arms=arms, grid=grid, sampled=sampled)
    _check_bounds(plan)                    # before any smoke shrinking: the full sweep must be valid
    plan.cell_configs = _resolve_cells(plan)
    check_seeds(plan.spec, plan.cell_configs)           # on the full sweep's cells, as _check_bounds
    check_metric_keys(plan.spec, plan.cell_configs)
    if new:                     # on the full sweep's cells; a plan read back by `resume` ran already
        plan.inert = inert_fields(plan.runtime(), plan.cells, {**{p: ("grid", v) for p, v in grid.items()}, **sampled})
    if smoke:
        _shrink_for_smoke(plan)
        _check_bounds(plan)
        plan.cell_configs = _resolve_cells(plan)
    check_selection(plan.spec, plan.cell_configs)
    if new:
        check_inert(plan.inert, s.allow_inert, s.space)
    return plan


def _resolved(runtime: dict, params: dict) -> TrialConfig:
    try:
        return resolve_trial(runtime, params)
    except Exception as exc:  # pydantic ValidationError or a bad path
        msg = first_error(exc, TrialConfig) if isinstance(exc, ValidationError) else str(exc)
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise SpecError(f"search: the trial with {shown} is not valid: {msg}. Fix that value in "
                        f"search.space or in the arm's overrides.") from None


def _resolve_cells(plan: Plan) -> list[TrialConfig]:
    """Every cell's config, resolved and validated once (aligned with plan.cells)."""
    runtime = plan.runtime()
    return [_resolved(runtime, cell) for cell in plan.cells]


def _check_bounds(plan: Plan) -> None:
    """Every cell with every sampled distribution at each of its bounds must be a valid trial (for
    more than MAX_CHECKED_CELLS cells, an even sample of them)."""
    if not plan.sampled:
        return
    runtime = plan.runtime()
    cells = plan.cells
    for cell in cells[::max(1, len(cells) // MAX_CHECKED_CELLS)]:
        for path, (kind, args) in plan.sampled.items():
            for v in distribution_bounds(kind, args):
                _resolved(runtime, {**cell, path: v})


def _shrink_for_smoke(plan: Plan) -> None:
    """2 trials of 1 short epoch on a data subset, whatever the spec."""
    if len(plan.arms) >= 2:
        keep = list(plan.arms)[:2]
        plan.arms = {a: plan.arms[a] for a in keep}
        plan.grid = {p: v[:1] for p, v in plan.grid.items()}
    else:
        plan.grid = {p: v[:1] for p, v in plan.grid.items()}
        wide = next((p for p, v in plan.spec.search.space.items() if p in plan.grid and
                     len(next(iter(v.values()))) >= 2), None)
        if wide is not None:
            plan.grid[wide] = list(next(iter(plan.spec.search.space[wide].values())))[:2]
    one_cell = len(plan.cells) == 1
    spec = plan.spec.model_copy(deep=True)
    # 2 trials: one configuration on 2 seeds when the spec repeats (exercises the repeater), else 2 samples.
    spec.search.repeats = 2 if one_cell and spec.search.repeats > 1 else 1
    spec.search.num_samples = 2 if one_cell and spec.search.repeats == 1 else 1
    spec.search.scheduler.grace_period = 1
    plan.spec, plan.smoke = spec, True
    plan.limits, plan.force = dict(SMOKE_LIMITS), dict(SMOKE_SET)
    plan.experiment = plan.experiment if "smoke" in plan.experiment else plan.experiment + "-smoke"


__all__ = ["Plan", "plan_search", "SMOKE_LIMITS", "SMOKE_SET"]


def inert_arms(spec: dict) -> dict[str, list[str]]:
    """For the dashboard: searched field -> the arms of a saved spec (a dict, as in lico_run.yaml)
    in which it cannot change training (plan/inert.py); {} when the spec cannot be read today."""
    try:
        s = validate_spec(spec, source=RUN_FILE)
        grid, sampled = grid_and_sampled(s)
        plan = Plan(spec=s, experiment="", storage="", arms=dict(s.ablation or {}), grid=grid, sampled=sampled)
        found = inert_fields(plan.runtime(), plan.cells, {**{p: ("grid", v) for p, v in grid.items()}, **sampled})
    except (SpecError, ValidationError, TypeError, ValueError):     # an old or damaged spec: nothing left out
        return {}
    return {p: i.arms for p, i in found.items() if i.arms}
