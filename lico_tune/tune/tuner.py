"""A plan -> ray.tune.Tuner: trainable with resources, search algorithm, scheduler, callbacks,
storage, checkpoints, retries and the progress table. Starts nothing (Ray starts in `run`)."""
from __future__ import annotations

import functools
import os

from ray import tune

from ..layout import trial_dirname as _dirname
from ..plan import Plan
from .callbacks import CatalogCallback, KeepResultsOnRetry
from .progress import TrialEvents, quiet_trial_tracebacks
from .recover import StoredCheckpoints
from .searchers import scheduler, search_algorithm
from .trainable import make_trainable


def trial_dirname(trial) -> str:
    return _dirname(trial.trial_id, trial.config.get("arm"))


def reporter(plan: Plan):
    params = {"arm": "arm"} if plan.arms else {}
    for path in [*plan.grid, *plan.sampled]:
        short = path.split(".")[-1]
        params[path] = path if short in params.values() or short == "name" else short
    metrics = {"epoch": "epoch", "dataset": "dataset", "train/loss": "loss"}
    for m in ["test/acc", "test/acc_ema", *plan.metrics]:
        metrics.setdefault(m, m.removeprefix("test/"))
    return tune.CLIReporter(parameter_columns=params, metric_columns=metrics, max_report_frequency=15,
                            max_progress_rows=40, max_error_rows=40, max_column_length=24,
                            total_samples=plan.n_trials)


def quiet_ray_env() -> None:
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"                   # our CLIReporter table, not the AIR one
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"  # metrics may come on some epochs only
    # num_to_keep forces a state snapshot every num_to_keep checkpoints: good for resume; not a warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def flat_trial_config(plan: Plan, params: dict) -> dict:
    """A trial's resolved config as dotted keys ({'lico.ot.epsilon': 0.1, ...}) for the trackers."""
    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value
    return dict(walk(plan.trial_config(params).model_dump(mode="json")))


def tracker_callbacks(plan: Plan) -> list:
    """MLflow / W&B mirrors of every trial, when the spec's `tracking` section asks for them."""
    tracking = plan.spec.tracking
    if tracking.mlflow is None and tracking.wandb is None:
        return []
    from .trackers import TrackerCallback

    # A partial of a module-level function: Tune pickles the callbacks into tuner.pkl.
    return [TrackerCallback(tracking, plan.experiment, plan.experiment_path,
                            resolve=functools.partial(flat_trial_config, plan))]


def trainable_with_resources(plan: Plan):
    res = plan.spec.resources
    return tune.with_resources(make_trainable(plan.runtime()), {"cpu": res.cpu, "gpu": res.gpu})


def build_tuner(plan: Plan, verbose: bool = False, status_every_s: float = 30.0, storage=None) -> tune.Tuner:
    """The ray.tune.Tuner for a plan (does not start Ray; `ray.init` happens in fit or earlier).
    verbose: Ray's status table (`reporter`); otherwise one line per trial event and a status line
    every `status_every_s` seconds (`progress.TrialEvents`). storage: (pyarrow filesystem, the
    storage root's path on it) Ray writes through (run.py: signed_fs), else the plan's storage."""
    quiet_ray_env()
    s = plan.spec.search
    alg, space, num_samples = search_algorithm(plan)
    single = len(plan.metrics) == 1
    tune_config = tune.TuneConfig(
        metric=next(iter(plan.metrics)) if single else None,
        mode=next(iter(plan.metrics.values())) if single else None,
        search_alg=alg, scheduler=scheduler(plan), num_samples=num_samples,
        # A finished trial's worker process runs the next trial: torch, the text encoder's code
        # and the datasets stay loaded (trivial trials: 0.7 s of overhead each instead of 3.6 s).
        reuse_actors=True,
        trial_dirname_creator=trial_dirname)
    # The catalog callback keeps `lico-tune report` and the dashboard current while trials run.
    callbacks = [KeepResultsOnRetry(), CatalogCallback(plan.storage), *tracker_callbacks(plan), StoredCheckpoints()]
    if not verbose:
        callbacks.append(TrialEvents(list(plan.metrics), plan.n_trials, status_every_s))
        quiet_trial_tracebacks()
    fs, storage_path = storage or (None, plan.storage)
    run_config = tune.RunConfig(
        name=plan.experiment, storage_path=storage_path, storage_filesystem=fs, callbacks=callbacks,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=s.num_to_keep),
        failure_config=tune.FailureConfig(max_failures=s.max_failures),
        sync_config=tune.SyncConfig(sync_artifacts=True),
        progress_reporter=reporter(plan) if verbose else None, verbose=1 if verbose else 0)
    return tune.Tuner(trainable_with_resources(plan), param_space=space, tune_config=tune_config,
                      run_config=run_config)
