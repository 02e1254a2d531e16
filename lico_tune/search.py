"""Spec -> ray.tune.Tuner: search algorithm, scheduler, resources, storage; run, resume, summarise.

This is the only module that imports Ray (lazily, inside functions), so `plan_search` and the spec
checks run without it.

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
* An arm's overrides are applied after the sampled values: an arm that sets `lico.alpha: 0`
  wins over a searched `lico.alpha`.
* **Schedulers**: FIFO, or ASHA on the single metric with `epoch` as time (ASHA with two metrics
  is refused: Ray's ASHA compares trials on one metric).
* Trials may report a metric only on some epochs (`eval.every`, saliency at the end); Tune's
  strict metric check is off and the searchers and ASHA skip results without the metric.
"""
from __future__ import annotations

import copy
import datetime as _dt
import itertools
import json
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .spec import Spec, SpecError, TrialConfig, _first_error, field_paths, get_path, set_path, validate_spec

RUN_FILE = "lico_run.yaml"          # in the experiment directory: what `lico-tune resume` needs
SUMMARY_FILE = "summary.json"
MAX_CHECKED_CELLS = 2000

# --smoke-test: every trial is clamped to at most these values (a min, so smaller spec values stay).
SMOKE_LIMITS = {"train.epochs": 1, "train.steps_per_epoch": 5, "data.train_subset": 512,
                "data.test_subset": 256, "eval.n_images": 8, "eval.gallery_images": 2,
                "eval.rise_n_masks": 50}
SMOKE_SET = {"eval.every": 1, "eval.sanity": False}


# ----------------------------------------------------------------------------- the plan (no Ray)


@dataclass
class Plan:
    """Everything needed to build the Tuner, in plain data (saved as lico_run.yaml)."""
    spec: Spec
    experiment: str
    storage: str                                    # absolute local path or a cloud URI
    arms: dict[str, dict[str, Any]]                 # {} when the spec has no ablation
    grid: dict[str, list]                           # crossed axes (path -> values)
    sampled: dict[str, tuple[str, list]]            # path -> (kind, args)
    limits: dict[str, Any] = field(default_factory=dict)   # min-clamps (smoke test)
    force: dict[str, Any] = field(default_factory=dict)    # set after everything (smoke test)
    smoke: bool = False

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
        return len(self.cells) * self.spec.search.num_samples

    @property
    def experiment_path(self) -> str:
        return _join(self.storage, self.experiment)

    @property
    def optuna_url(self) -> Optional[str]:
        if self.spec.search.algorithm != "optuna":
            return None
        if self.spec.search.optuna_storage:
            return self.spec.search.optuna_storage
        if _is_uri(self.storage):  # SQLite cannot live in a bucket: keep it on the driver
            local = Path("~/.cache/lico-tune/optuna").expanduser() / f"{self.experiment}.db"
            return f"sqlite:///{local}"
        return f"sqlite:///{Path(self.experiment_path) / 'optuna.db'}"

    def runtime(self) -> dict:
        """What every trial needs to resolve its config (captured by the trainable)."""
        return {"base": self.spec.base.model_dump(mode="json"), "arms": self.arms,
                "limits": self.limits, "force": self.force}

    def to_yaml(self) -> str:
        from .provenance import provenance
        return yaml.safe_dump({
            "experiment": self.experiment, "storage": self.storage, "smoke": self.smoke,
            "arms": self.arms, "grid": self.grid, "limits": self.limits, "force": self.force,
            "optuna_storage": self.optuna_url,
            "created": _dt.datetime.now().isoformat(timespec="seconds"), **provenance(),
            "spec": self.spec.model_dump(mode="json")}, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "Plan":
        data = yaml.safe_load(text)
        plan = plan_search(validate_spec(data["spec"], source=RUN_FILE), name=data["experiment"],
                           storage=data["storage"])
        plan.arms, plan.grid = data.get("arms") or {}, data.get("grid") or {}
        plan.limits, plan.force, plan.smoke = data.get("limits") or {}, data.get("force") or {}, data.get("smoke", False)
        return plan


def resolve_trial(runtime: dict, params: dict) -> TrialConfig:
    """A trial's config: base, then the sampled/grid values, then its arm, then the smoke clamps."""
    tree = copy.deepcopy(runtime["base"])
    paths = set(field_paths())
    for path, value in params.items():
        if path in paths:
            set_path(tree, path, value)
    arm = params.get("arm")
    for path, value in (runtime["arms"].get(arm, {}) if arm is not None else {}).items():
        set_path(tree, path, value)
    for path, cap in runtime.get("limits", {}).items():
        now = get_path(tree, path)
        set_path(tree, path, cap if now is None else min(now, cap))
    for path, value in runtime.get("force", {}).items():
        set_path(tree, path, value)
    return TrialConfig.model_validate(tree)


def plan_search(spec: Spec, name: Optional[str] = None, storage: Optional[str] = None,
                smoke: bool = False) -> Plan:
    """Check the spec's search section against what Ray Tune supports and build the plan.
    Raises SpecError naming the field and the fix."""
    s = spec.search
    storage = storage or spec.storage
    storage = storage if _is_uri(storage) else str(Path(storage).expanduser().resolve())
    name = name or f"{spec.name}_{_dt.datetime.now():%Y-%m-%d_%H-%M-%S}"
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise SpecError(f"--name '{name}': use letters, digits and _ . + - only (it names a directory).")
    arms = dict(spec.ablation or {})
    for arm in arms:
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", arm):
            raise SpecError(f"ablation: arm name '{arm}' may hold letters, digits and _ . + - only.")

    grid, sampled = {}, {}
    for path, dist in s.space.items():
        (kind, args), = dist.items()
        where = f"search.space.{path}"
        if kind == "grid" or (kind == "choice" and s.algorithm == "grid"):
            grid[path] = list(args)
            continue
        if s.algorithm == "grid":
            raise SpecError(f"{where}: '{kind}' needs a sampling algorithm; with search.algorithm 'grid' "
                            f"use {{grid: [...]}}, or set search.algorithm to 'random' or 'optuna'.")
        _check_range(where, kind, args)
        if kind == "choice" and s.algorithm == "optuna":
            bad = [v for v in args if not isinstance(v, (str, int, float, bool)) and v is not None]
            if bad:
                raise SpecError(f"{where}: Optuna's categorical values must be scalars (got {bad[0]!r}); "
                                f"make it a {{grid: [...]}} axis instead.")
        sampled[path] = (kind, list(args))

    if s.algorithm == "optuna" and not sampled:
        raise SpecError("search.algorithm 'optuna' needs at least one sampled distribution "
                        "(uniform, loguniform, randint, quniform or choice) in search.space; with only "
                        "grid axes use search.algorithm 'grid'.")
    if s.scheduler.name == "asha" and len(s.metrics) != 1:
        raise SpecError(f"search.scheduler 'asha' with {len(s.metrics)} metrics ({', '.join(s.metrics)}): "
                        f"Ray's ASHA stops trials on one metric. Keep one metric, or use scheduler 'fifo' "
                        f"(a multi-objective search then gives a Pareto front).")
    if not s.metrics:
        raise SpecError("search.metrics: name at least one metric, e.g. {test/acc: max}.")

    plan = Plan(spec=spec, experiment=name, storage=storage, arms=arms, grid=grid, sampled=sampled)
    if smoke:
        _shrink_for_smoke(plan)
    _check_cells(plan)
    return plan


def _check_range(where: str, kind: str, args: list) -> None:
    if kind == "choice":
        return
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise SpecError(f"{where}: {kind} takes numbers, got {args}.")
    low, high = args[0], args[1]
    if not low < high:
        raise SpecError(f"{where}: {kind} needs low < high, got [{low}, {high}].")
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{where}: loguniform needs low > 0, got {low}.")
    if kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise SpecError(f"{where}: randint takes integers [low, high) (high excluded), got {args}.")
    if kind == "quniform" and not args[2] > 0:
        raise SpecError(f"{where}: quniform's q must be > 0, got {args[2]}.")


def _bounds(kind: str, args: list) -> list:
    if kind == "choice":
        return list(args)
    if kind == "randint":
        return [args[0], args[1] - 1]
    return [args[0], args[1]]


def _check_cells(plan: Plan) -> None:
    """Every cell, with every sampled distribution at each of its bounds, must be a valid trial."""
    runtime = plan.runtime()
    cells = plan.cells
    step = max(1, len(cells) // MAX_CHECKED_CELLS)
    for cell in cells[::step]:
        probes = [dict(cell)] + [{**cell, path: v} for path, (kind, args) in plan.sampled.items()
                                  for v in _bounds(kind, args)]
        for params in probes:
            try:
                resolve_trial(runtime, params)
            except Exception as exc:  # pydantic ValidationError or a bad path
                from pydantic import ValidationError
                msg = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
                shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
                raise SpecError(f"search: the trial with {shown} is not valid: {msg}") from None


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
    samples = 2 if len(plan.cells) == 1 else 1
    spec = plan.spec.model_copy(deep=True)
    spec.search.num_samples = samples
    spec.search.scheduler.grace_period = 1
    plan.spec, plan.smoke = spec, True
    plan.limits, plan.force = dict(SMOKE_LIMITS), dict(SMOKE_SET)
    plan.experiment = plan.experiment if "smoke" in plan.experiment else plan.experiment + "-smoke"


# ----------------------------------------------------------------------------- storage helpers


def _is_uri(path: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", str(path)))


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if _is_uri(root) else str(Path(root) / name)


def write_file(directory: str, name: str, text: str) -> None:
    if not _is_uri(directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / name).write_text(text)
        return
    import pyarrow.fs
    fs, path = pyarrow.fs.FileSystem.from_uri(directory)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{name}") as f:
        f.write(text.encode())


def read_file(directory: str, name: str) -> str:
    if not _is_uri(directory):
        file = Path(directory).expanduser() / name
        if not file.is_file():
            raise SpecError(f"{directory} is not a lico-tune experiment directory: it has no {name}. "
                            f"Pass the directory `lico-tune run` printed (<storage>/<experiment name>).")
        return file.read_text()
    import pyarrow.fs
    fs, path = pyarrow.fs.FileSystem.from_uri(directory)
    with fs.open_input_stream(f"{path}/{name}") as f:
        return f.read().decode()


# ----------------------------------------------------------------------------- Ray side


def make_trainable(runtime: dict):
    """The Tune function trainable for this experiment (the runtime is captured, not sent per trial)."""

    def lico_trial(config: dict) -> None:
        from lico_tune.trainable import run_trial
        run_trial(config, runtime)

    return lico_trial


def trial_dirname(trial) -> str:
    arm = trial.config.get("arm")
    return f"trial_{trial.trial_id}" + (f"_{arm}" if arm else "")


class _OptunaCells:
    """Optuna define-by-run space: samples the sampled fields and assigns the crossed cell
    round-robin (trial k gets cell k mod n). The counter is part of the searcher's state, so a
    restored experiment continues the same assignment."""

    def __init__(self, sampled: dict[str, tuple[str, list]], cells: list[dict]):
        self.sampled, self.cells = sampled, cells
        self.assigned = 0

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
        cell = self.cells[self.assigned % len(self.cells)]
        self.assigned += 1
        for key, value in cell.items():
            trial.set_user_attr(key, value)
        return dict(cell)


def _domain(kind: str, args: list):
    from ray import tune
    return {"grid": tune.grid_search, "choice": tune.choice}[kind](list(args)) if kind in ("grid", "choice") \
        else {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint,
              "quniform": tune.quniform}[kind](*args)


def search_algorithm(plan: Plan):
    """(search_alg, param_space, num_samples) for the Tuner."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    s = plan.spec.search
    if s.algorithm in ("grid", "random"):
        space: dict[str, Any] = {}
        if plan.arms:
            space["arm"] = _domain("grid", list(plan.arms))
        for path, values in plan.grid.items():
            space[path] = _domain("grid", values)
        for path, (kind, args) in plan.sampled.items():
            space[path] = _domain(kind, args)
        alg = BasicVariantGenerator(max_concurrent=s.max_concurrent or 0, random_state=0)
        return alg, space, s.num_samples

    import optuna
    metrics, modes = list(plan.metrics), list(plan.metrics.values())
    url = plan.optuna_url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(url)
    n_total = plan.n_trials
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=min(10, max(2, n_total // 3)))
    from .tune_support import LicoOptunaSearch
    alg = LicoOptunaSearch(
        space=_OptunaCells(plan.sampled, plan.cells),
        metric=metrics[0] if len(metrics) == 1 else metrics,
        mode=modes[0] if len(modes) == 1 else modes,
        sampler=sampler, study_name=plan.experiment, storage=storage)
    if s.max_concurrent:
        alg = ConcurrencyLimiter(alg, max_concurrent=s.max_concurrent)
    return alg, {}, n_total


def scheduler(plan: Plan):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    sc = plan.spec.search.scheduler
    if sc.name == "fifo":
        return FIFOScheduler()
    runtime = plan.runtime()
    max_t = max(resolve_trial(runtime, cell).train.epochs for cell in plan.cells)
    return ASHAScheduler(time_attr="epoch", max_t=max(max_t, sc.grace_period),
                         grace_period=sc.grace_period, reduction_factor=sc.reduction_factor)


def reporter(plan: Plan):
    from ray.tune import CLIReporter
    params = {"arm": "arm"} if plan.arms else {}
    for path in [*plan.grid, *plan.sampled]:
        short = path.split(".")[-1]
        params[path] = path if short in params.values() or short == "name" else short
    metrics = {"epoch": "epoch", "dataset": "dataset", "train/loss": "loss"}
    for m in ["test/acc", "test/acc_ema", *plan.metrics]:
        metrics.setdefault(m, m.removeprefix("test/"))
    return CLIReporter(parameter_columns=params, metric_columns=metrics, max_report_frequency=15,
                       max_progress_rows=40, max_error_rows=40, max_column_length=24,
                       total_samples=plan.n_trials)


def _quiet_ray_env() -> None:
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"                   # our CLIReporter table, not the AIR one
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"  # metrics may come on some epochs only
    # num_to_keep forces a state snapshot every num_to_keep checkpoints: good for resume; not a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def build_tuner(plan: Plan):
    """The ray.tune.Tuner for a plan (does not start Ray; `ray.init` happens in fit or earlier)."""
    from ray import tune
    _quiet_ray_env()
    s, res = plan.spec.search, plan.spec.resources
    alg, space, num_samples = search_algorithm(plan)
    single = len(plan.metrics) == 1
    trainable = tune.with_resources(make_trainable(plan.runtime()), {"cpu": res.cpu, "gpu": res.gpu})
    tune_config = tune.TuneConfig(
        metric=next(iter(plan.metrics)) if single else None,
        mode=next(iter(plan.metrics.values())) if single else None,
        search_alg=alg, scheduler=scheduler(plan), num_samples=num_samples,
        # A finished trial's worker process runs the next trial: torch, the text encoder's code
        # and the datasets stay loaded (trivial trials: 0.7 s of overhead each instead of 3.6 s).
        reuse_actors=True,
        trial_dirname_creator=trial_dirname)
    from .results.callback import CatalogCallback
    from .tune_support import KeepResultsOnRetry
    # The catalog callback keeps `lico-tune report` and the dashboard current while trials run.
    callbacks = [KeepResultsOnRetry(), CatalogCallback(plan.storage)]
    run_config = tune.RunConfig(
        name=plan.experiment, storage_path=plan.storage, callbacks=callbacks,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=s.num_to_keep),
        failure_config=tune.FailureConfig(max_failures=s.max_failures),
        sync_config=tune.SyncConfig(sync_artifacts=True),
        progress_reporter=reporter(plan), verbose=1)
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


def init_ray(address: Optional[str]) -> bool:
    """Connect to a cluster (`auto`, HOST:PORT, or RAY_ADDRESS) or start a local Ray.
    Returns True when this process started Ray (and so should shut it down)."""
    import logging

    import ray
    if ray.is_initialized():
        return False
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address or os.environ.get("RAY_ADDRESS"):
        try:
            ray.init(address=address or None, **kwargs)
        except ConnectionError as exc:
            where = address or f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}"
            raise SpecError(f"could not connect to a Ray cluster at {where} ({str(exc).splitlines()[0]}). "
                            f"Start one (`ray up ray_cluster.yaml`, or `ray start --head` here), check "
                            f"HOST:PORT, or leave out --address to run on this machine alone.") from None
    else:
        ray.init(include_dashboard=False, **kwargs)
    return True


def run(plan: Plan, address: Optional[str] = None, out=sys.stdout) -> "Summary":
    """Run a planned experiment to the end and return its summary."""
    import ray
    started = init_ray(address)
    try:
        write_file(plan.experiment_path, RUN_FILE, plan.to_yaml())
        print(f"experiment {plan.experiment}: {plan.n_trials} trials "
              f"({len(plan.cells)} cells x {plan.spec.search.num_samples} samples), "
              f"algorithm {plan.spec.search.algorithm}, scheduler {plan.spec.search.scheduler.name}, "
              f"results in {plan.experiment_path}" +
              (f", Optuna study in {plan.optuna_url}" if plan.optuna_url else ""), file=out, flush=True)
        results = build_tuner(plan).fit()
        return summarize(results, plan, out=out)
    finally:
        if started:
            ray.shutdown()


def resume(experiment_dir: str, address: Optional[str] = None, out=sys.stdout) -> "Summary":
    """Finish an interrupted experiment: finished trials stay, unfinished and errored ones continue
    from their last checkpoints."""
    import ray
    from ray import tune
    experiment_dir = experiment_dir if _is_uri(experiment_dir) else str(Path(experiment_dir).expanduser().resolve())
    plan = Plan.from_yaml(read_file(experiment_dir, RUN_FILE))
    plan.storage, _, plan.experiment = experiment_dir.rstrip("/").rpartition("/")   # wherever it lies now
    _quiet_ray_env()
    started = init_ray(address)
    try:
        res = plan.spec.resources
        trainable = tune.with_resources(make_trainable(plan.runtime()), {"cpu": res.cpu, "gpu": res.gpu})
        if not tune.Tuner.can_restore(experiment_dir):
            raise SpecError(f"{experiment_dir}: Ray Tune finds no experiment state to restore there "
                            f"(the run was stopped before its first snapshot); start it again with `lico-tune run`.")
        print(f"resuming {plan.experiment} from {experiment_dir}", file=out, flush=True)
        tuner = tune.Tuner.restore(experiment_dir, trainable=trainable, resume_errored=True)
        summary = summarize(tuner.fit(), plan, out=out)
        if not summary.n_unfinished:
            close_orphan_optuna_trials(plan)
        return summary
    finally:
        if started:
            ray.shutdown()


def close_orphan_optuna_trials(plan: Plan) -> int:
    """After an experiment ends, mark the Optuna trials still RUNNING as FAIL: they were asked for
    by a driver that was killed before Tune's next state snapshot, so Tune never ran them."""
    if not plan.optuna_url:
        return 0
    import optuna
    storage = optuna.storages.RDBStorage(plan.optuna_url)
    study_id = storage.get_study_id_from_name(plan.experiment)
    n = 0
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "lico_tune", "never run: its driver was interrupted")
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        n += 1
    return n


# ----------------------------------------------------------------------------- summary


@dataclass
class Summary:
    text: str
    rows: list[dict]
    n_errors: int
    experiment_path: str
    n_unfinished: int = 0


def error_reason(error: BaseException | str | None) -> Optional[str]:
    """The exception line of a trial error ('TrialDiverged: Loss became nan ...')."""
    if error is None:
        return None
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    pattern = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Diverged|Missing|Mismatch|Interrupt)): (.+)")
    found = [ln for ln in lines if pattern.match(ln) and not ln.startswith(("ray.exceptions.RayTaskError",
                                                                              "ray.tune.error"))]
    if found:
        return found[-1][:400]
    return (lines[-1] if lines else type(error).__name__)[:400]


def _rows(results, plan: Plan) -> list[dict]:
    try:    # Tune's own view of each trial (a result's `done` flag is not always kept)
        trials = list(results._experiment_analysis.trials)
    except AttributeError:
        trials = []
    status = {t.trial_id: t.status for t in trials}
    by_dir = {Path(str(t.path)).name: t.trial_id for t in trials}
    rows = []
    for r in results:
        m = dict(r.metrics or {})
        trial_id = m.get("trial_id") or by_dir.get(Path(str(r.path)).name) or Path(str(r.path)).name
        cfg = dict(r.config or {})
        params = {k: v for k, v in cfg.items() if k != "arm"}
        dataset = m.get("dataset")
        if dataset is None:
            try:
                dataset = resolve_trial(plan.runtime(), cfg).data.name
            except Exception:  # a config that no longer resolves: leave it unknown
                pass
        row = {"trial_id": trial_id, "arm": cfg.get("arm"),
               "dataset": dataset, "params": params, "epoch": m.get("epoch"),
               "path": str(r.path), "error": error_reason(r.error),
               "finished": status[trial_id] == "TERMINATED" if trial_id in status else bool(m.get("done"))}
        for key, value in m.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "/" in key:
                row[key] = value
        rows.append(row)
    return rows


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _pareto(rows: list[dict], metrics: dict[str, str]) -> list[dict]:
    ok = [r for r in rows if all(isinstance(r.get(m), (int, float)) for m in metrics)]
    sign = {m: (1 if mode == "max" else -1) for m, mode in metrics.items()}

    def dominates(a, b):
        ge = all(sign[m] * a[m] >= sign[m] * b[m] for m in metrics)
        gt = any(sign[m] * a[m] > sign[m] * b[m] for m in metrics)
        return ge and gt

    return [a for a in ok if not any(dominates(b, a) for b in ok if b is not a)]


def summarize(results, plan: Plan, out=sys.stdout) -> Summary:
    rows = _rows(results, plan)
    metrics = plan.metrics
    done = [r for r in rows if not r["error"] and r["finished"]]
    errors = [r for r in rows if r["error"]]
    unfinished = [r for r in rows if not r["error"] and not r["finished"]]
    lines = [f"\n== Summary of {plan.experiment}: {len(rows)} trials, {len(done)} finished, "
             f"{len(errors)} errored ==" if not unfinished else
             f"\n== Summary of {plan.experiment}: {len(rows)} trials, {len(done)} finished, {len(errors)} errored, "
             f"{len(unfinished)} unfinished (continue with: lico-tune resume {plan.experiment_path}) =="]
    for metric, mode in metrics.items():
        have = [r for r in done if isinstance(r.get(metric), (int, float))]
        if not have:
            lines.append(f"best {metric}: no trial reported it (check the metric name in search.metrics)")
            continue
        best = (max if mode == "max" else min)(have, key=lambda r: r[metric])
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
        lines.append(f"best {metric} ({mode}): {_fmt(best[metric])} - trial {best['trial_id']}, "
                     f"arm {best['arm'] or '-'}, dataset {best['dataset']}" + (f", {params}" if params else ""))
    if len(metrics) >= 2:
        front = _pareto(done, metrics)
        lines.append(f"Pareto front ({', '.join(f'{m} {d}' for m, d in metrics.items())}): " +
                     "; ".join(f"{r['trial_id']} (arm {r['arm'] or '-'}: " +
                               ", ".join(f"{_fmt(r[m])}" for m in metrics) + ")" for r in front))
    overall = sorted({k for r in done for k in r if k.startswith("saliency/") and k.endswith("/overall")})
    shown = list(dict.fromkeys([*metrics, "test/acc", "test/acc_ema", *overall]))
    groups: dict[tuple, list[dict]] = {}
    for r in done:
        groups.setdefault((r["arm"] or "-", r["dataset"]), []).append(r)
    if groups:
        lines.append("per arm and dataset (mean ± sd over trials):")
        for (arm, dataset), rs in sorted(groups.items(), key=lambda kv: (str(kv[0][1]), kv[0][0])):
            parts = []
            for m in shown:
                vals = [r[m] for r in rs if isinstance(r.get(m), (int, float))]
                if vals:
                    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                    mean = statistics.fmean(vals)
                    spec = ".2f" if abs(mean) >= 1 else ".3g"
                    parts.append(f"{m} {mean:{spec}} ± {sd:{spec}}")
            lines.append(f"  arm {arm:<12} {str(dataset):<14} n={len(rs)}  " + ", ".join(parts))
    if errors:
        lines.append("errors:")
        for r in errors:
            lines.append(f"  trial {r['trial_id']} (arm {r['arm'] or '-'}, dataset {r['dataset']}): {r['error']}")
    lines.append(f"results: {plan.experiment_path}" + (f"; Optuna study '{plan.experiment}' in {plan.optuna_url}"
                                                        if plan.optuna_url else ""))
    text = "\n".join(lines)
    print(text, file=out, flush=True)
    try:
        write_file(plan.experiment_path, SUMMARY_FILE, json.dumps({"experiment": plan.experiment,
                                                                   "metrics": metrics, "trials": rows},
                                                                  indent=2, default=str))
    except OSError:
        pass
    return Summary(text=text, rows=rows, n_errors=len(errors), experiment_path=plan.experiment_path,
                   n_unfinished=len(unfinished))


__all__ = ["Plan", "plan_search", "resolve_trial", "build_tuner", "run", "resume", "summarize", "Summary",
           "SMOKE_LIMITS", "RUN_FILE", "error_reason"]
