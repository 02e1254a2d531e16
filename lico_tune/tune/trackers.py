"""Experiment trackers: one MLflow run and/or one W&B run per Tune trial, fed by the Tune driver.

The spec's `tracking` section turns them on. The driver logs, for each trial:
- parameters: the trial's fully resolved config (dotted keys, e.g. `lico.ot.epsilon`), its arm and
  Ray trial id (also as tags, so a tracker run links back to its trial directory);
- every reported epoch's metrics (keys with a '/': `test/acc`, `train/mm`, `health/...`,
  `saliency/...`), at step = epoch;
- at the end, the trial's final metrics (metrics.json's numbers) as the run's summary, and its
  gallery, trial spec, provenance and metrics.json as artifacts (the gallery when the trial
  directory is on this machine's filesystem; for s3:// or gs:// storage the run also gets an
  `artifacts_uri` tag pointing at the trial directory).

A trial writes metrics.json after its last report, and Tune copies it to storage only when it
stops the trial's actor, after `on_trial_complete`. So a finished trial's run is closed once its
metrics.json is in storage (checked every Tune step) or, at the latest, at the experiment's end
(Tune has stopped every actor by then).

Config values keep their types in W&B (epsilon is a number, not the text "0.1"); MLflow stores
every parameter as text (its API), so there they are strings.

The libraries are used directly (MlflowClient with explicit run ids, W&B runs created with
`reinit="create_new"`), not through Ray's logger callbacks: those log only the searched values as
parameters and upload the whole trial directory (checkpoints included) as the artifact.
A resumed experiment continues the same tracker runs (found by the trial id tag / the W&B run id).
"""
from __future__ import annotations

import json
import math
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ray.tune import Callback

from .. import layout
from ..storage import Storage, join

MLFLOW_PARAM_LIMIT = 100          # MlflowClient.log_batch accepts at most 100 params per call
CLOSE_WAIT_S = 30.0               # longest wait for a finished trial's metrics.json before its run is closed anyway
CHECK_EVERY_S = 1.0               # how often the driver looks for it


def tracked_metrics(result: dict) -> dict[str, float]:
    """The numeric lico-tune metrics of one Tune result (keys with a '/'), finite values only."""
    return {k: float(v) for k, v in result.items()
            if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def artifact_location(cfg) -> Optional[str]:
    """A new MLflow experiment's artifact root: the spec's, else mlartifacts/ beside a SQLite store
    (MLflow's own default is relative to the driver's working directory)."""
    if cfg.artifact_location:
        return cfg.artifact_location
    uri = cfg.tracking_uri or ""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent / "mlartifacts").as_uri()
    return None


def _artifact_files(trial_dir: str, into: Path) -> list[Path]:
    """The trial spec, provenance and metrics.json of a trial directory (local or s3://, gs://),
    as local files (copied into `into` when the directory is remote)."""
    if "://" not in trial_dir:
        root = Path(trial_dir)
        return [root / n for n in (layout.TRIAL_SPEC, layout.PROVENANCE, layout.METRICS_FILE) if (root / n).is_file()]
    storage, out = Storage(trial_dir), []
    for n in (layout.TRIAL_SPEC, layout.PROVENANCE, layout.METRICS_FILE):
        text = storage.read_text(join(trial_dir, n))
        if text is not None:
            (into / n).write_text(text)
            out.append(into / n)
    return out


def final_metrics(trial_dir: str) -> Optional[dict[str, float]]:
    """The numeric metrics of a trial's metrics.json (None while it is not in storage)."""
    text = Storage(trial_dir).read_text(join(trial_dir, layout.METRICS_FILE))
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return tracked_metrics(data) if isinstance(data, dict) else None


def check_trackers(tracking) -> None:
    """Before any trial starts: the tracker libraries are installed and MLflow's store opens.
    Raises SpecError naming the spec field and the fix."""
    from ..errors import SpecError
    if tracking.mlflow is not None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise SpecError("tracking.mlflow: MLflow is not installed; pip install 'lico-tune[mlflow]', "
                            "or remove the tracking.mlflow section.") from None
        try:
            MlflowClient(tracking_uri=tracking.mlflow.tracking_uri).search_experiments(max_results=1)
        except Exception as exc:  # any store error: a bad URI, a server that does not answer
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise SpecError(f"tracking.mlflow.tracking_uri {tracking.mlflow.tracking_uri!r}: MLflow cannot open "
                            f"this store ({first}). Use a server URL (http://host:5000) or a local database "
                            f"(sqlite:////abs/path/mlflow.db).") from None
    if tracking.wandb is not None:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise SpecError("tracking.wandb: W&B is not installed; pip install 'lico-tune[wandb]', "
                            "or remove the tracking.wandb section.") from None


class TrackerCallback(Callback):
    """Tune callback that mirrors every trial into MLflow and/or W&B."""

    def __init__(self, tracking, experiment: str, experiment_path: str,
                 resolve: Callable[[dict], dict[str, Any]]):
        self.tracking = tracking
        self.experiment = experiment
        self.experiment_path = experiment_path
        self.resolve = resolve
        self._mlflow = None                     # MlflowClient, made in setup (not pickled)
        self._mlflow_experiment_id: Optional[str] = None
        self._mlflow_runs: dict[str, str] = {}  # Ray trial id -> MLflow run id
        self._wandb_runs: dict[str, Any] = {}   # Ray trial id -> wandb Run
        self._closing: dict[str, tuple] = {}    # Ray trial id -> (trial, deadline): finished, metrics.json awaited
        self._checked = 0.0

    def __getstate__(self):                    # Tune pickles the callbacks into tuner.pkl
        state = dict(self.__dict__)
        state.update(_mlflow=None, _mlflow_experiment_id=None, _mlflow_runs={}, _wandb_runs={}, _closing={},
                     _checked=0.0)
        return state

    def __setstate__(self, state):             # a tuner.pkl of an older lico-tune lacks the newer fields
        self.__dict__.update({"_closing": {}, "_checked": 0.0, **state})

    # ------------------------------------------------------------------ Tune hooks

    def setup(self, **info):
        if self.tracking.mlflow is not None:
            from mlflow.tracking import MlflowClient
            cfg = self.tracking.mlflow
            self._mlflow = MlflowClient(tracking_uri=cfg.tracking_uri)
            name = cfg.experiment or self.experiment
            found = self._mlflow.get_experiment_by_name(name)
            self._mlflow_experiment_id = (found.experiment_id if found else
                                          self._mlflow.create_experiment(name, artifact_location(cfg)))

    def on_trial_start(self, iteration, trials, trial, **info):
        params = self._params(trial)
        tags = {"lico_tune.experiment": self.experiment, "ray.trial_id": trial.trial_id,
                "ray.trial_dir": str(trial.path), "arm": str(trial.config.get("arm", "-"))}
        if self._mlflow is not None and trial.trial_id not in self._mlflow_runs:
            self._mlflow_runs[trial.trial_id] = self._mlflow_run(trial, params, tags)
        if self.tracking.wandb is not None and trial.trial_id not in self._wandb_runs:
            self._wandb_runs[trial.trial_id] = self._wandb_run(trial, params, tags)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        metrics = tracked_metrics(result)
        epoch = int(result.get("epoch") or result.get("training_iteration") or 0)
        run_id = self._mlflow_runs.get(trial.trial_id)
        if run_id and metrics:
            from mlflow.entities import Metric
            import time
            now = int(time.time() * 1000)
            self._mlflow.log_batch(run_id, metrics=[Metric(k, v, now, epoch) for k, v in metrics.items()])
        run = self._wandb_runs.get(trial.trial_id)
        if run is not None and metrics:
            run.log({**metrics, "epoch": epoch})

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._closing[trial.trial_id] = (trial, time.time() + CLOSE_WAIT_S)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._closing.pop(trial.trial_id, None)
        self._end(trial, failed=True, final=None)

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        if now - self._checked < CHECK_EVERY_S:     # a look per second at most (a GET each on s3://)
            return
        self._checked = now
        for trial_id, (trial, deadline) in list(self._closing.items()):
            final = final_metrics(str(trial.path))
            if final is not None or now > deadline:
                self._closing.pop(trial_id)
                self._end(trial, failed=False, final=final)

    def on_experiment_end(self, trials, **info):
        for trial_id, (trial, _) in list(self._closing.items()):   # every actor has stopped and synced
            self._closing.pop(trial_id)
            self._end(trial, failed=False, final=final_metrics(str(trial.path)))
        if self._wandb_runs or self.tracking.wandb is not None:
            for trial_id in list(self._wandb_runs):
                self._wandb_runs.pop(trial_id).finish()
            import wandb
            wandb.teardown()          # stops W&B's background service process

    # ------------------------------------------------------------------ helpers

    def _params(self, trial) -> dict[str, Any]:
        """The resolved config with its types (W&B keeps them; MLflow gets their text)."""
        params = dict(self.resolve(trial.config))
        params["arm"] = str(trial.config.get("arm", "-"))
        return params

    def _mlflow_run(self, trial, params: dict, tags: dict) -> str:
        from mlflow.entities import Param
        client = self._mlflow
        found = client.search_runs([self._mlflow_experiment_id],
                                   filter_string=f"tags.`ray.trial_id` = '{trial.trial_id}'", max_results=1)
        if found:                      # a resumed experiment: continue the trial's run
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return run_id
        run = client.create_run(self._mlflow_experiment_id, run_name=str(trial), tags=tags)
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), MLFLOW_PARAM_LIMIT):
            client.log_batch(run.info.run_id, params=items[i:i + MLFLOW_PARAM_LIMIT])
        return run.info.run_id

    def _wandb_run(self, trial, params: dict, tags: dict):
        import wandb
        cfg = self.tracking.wandb
        directory = cfg.dir or (self.experiment_path if "://" not in self.experiment_path
                                else str(layout.cache_path("wandb")))
        Path(directory).mkdir(parents=True, exist_ok=True)
        run_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.experiment}-{trial.trial_id}")[:120]
        return wandb.init(project=cfg.project, entity=cfg.entity, mode=cfg.mode, dir=directory,
                          id=run_id, name=str(trial), group=self.experiment, config=params,
                          tags=[tags["arm"]], notes=f"Ray trial {trial.trial_id}: {trial.path}",
                          resume="allow", reinit="create_new")

    def _end(self, trial, failed: bool, final: Optional[dict[str, float]]) -> None:
        trial_dir = str(trial.path)
        local = "://" not in trial_dir and Path(trial_dir).is_dir()
        gallery = Path(trial_dir) / layout.GALLERY
        with tempfile.TemporaryDirectory(prefix="lico-tracker-") as tmp:
            files = _artifact_files(trial_dir, Path(tmp))
            self._end_mlflow(trial, failed, final, files, gallery if local else None)
            self._end_wandb(trial, failed, final, files, gallery if local else None)

    def _end_mlflow(self, trial, failed: bool, final, files: list[Path], gallery: Optional[Path]) -> None:
        run_id = self._mlflow_runs.pop(trial.trial_id, None)
        if not run_id:
            return
        if final:   # metrics only metrics.json has (the last result carries the others already)
            from mlflow.entities import Metric
            last = tracked_metrics(trial.last_result or {})
            epoch = int((trial.last_result or {}).get("epoch") or 0)
            extra = [Metric(k, v, int(time.time() * 1000), epoch) for k, v in final.items() if k not in last]
            if extra:
                self._mlflow.log_batch(run_id, metrics=extra)
        if self.tracking.mlflow.artifacts:
            for file in files:
                self._mlflow.log_artifact(run_id, str(file))
            if gallery is not None and gallery.is_dir():
                self._mlflow.log_artifacts(run_id, str(gallery), artifact_path=layout.GALLERY)
        if gallery is None:
            self._mlflow.set_tag(run_id, "artifacts_uri", str(trial.path))
        self._mlflow.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    def _end_wandb(self, trial, failed: bool, final, files: list[Path], gallery: Optional[Path]) -> None:
        run = self._wandb_runs.pop(trial.trial_id, None)
        if run is None:
            return
        if final:
            run.summary.update(final)
        if self.tracking.wandb.artifacts and (files or (gallery is not None and gallery.is_dir())):
            import wandb
            art = wandb.Artifact(f"gallery-{run.id}", type="saliency-gallery")
            if gallery is not None and gallery.is_dir():
                art.add_dir(str(gallery))
            for file in files:
                art.add_file(str(file))
            run.log_artifact(art)
        run.finish(exit_code=1 if failed else 0)
