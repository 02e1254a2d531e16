"""Experiment trackers: one MLflow run and/or one W&B run per Tune trial, fed by the Tune driver.

The spec's `tracking` section turns them on. The driver logs, for each trial:
- parameters: the trial's fully resolved config (dotted keys, e.g. `lico.ot.epsilon`), its arm and
  Ray trial id (also as tags, so a tracker run links back to its trial directory);
- every reported epoch's metrics (keys with a '/': `test/acc`, `train/mm`, `health/...`,
  `saliency/...`), at step = epoch;
- when the trial ends, the trial's final metrics (metrics.json's numbers) as the run's summary,
  and its gallery, trial spec, provenance and metrics.json as artifacts, read from the trial
  directory wherever it lies (a local path, or s3://, gs:// through lico_tune/storage's pyarrow
  filesystem); on cloud storage the run is also tagged `artifacts_uri` = the trial directory's URI.

A trial writes metrics.json after its last report, and Tune copies it to storage when it stops or
reuses the trial's actor, after `on_trial_complete`. So a finished trial's run is closed once its
metrics.json is in storage (checked every Tune step, at most once a second) or CLOSE_WAIT_S after
the trial ended, whichever comes first (and at the latest at the experiment's end); an errored
trial's run is closed at once, FAILED.

Where the tracker's own state lives: MLflow's is wherever its tracking URI and artifact location say
(a server for a cluster; a sqlite:/// store is the driver's disk). W&B writes its run files under
tracking.wandb.dir (default: the experiment directory when it is local); on cloud storage each
trial's W&B run directory is copied into the trial directory (`<trial>/wandb/<run dir>`) when
the run closes, so `wandb sync` works from any machine that reaches the bucket.

A tracker that fails while the sweep runs (a server gone, a refused key) is dropped with one
warning line naming it; the sweep and the other tracker go on (the trials' results are in storage
either way).

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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ray.tune import Callback

from .. import layout
from ..storage import Storage, is_uri, join

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


_SCHEMES = {"gcs": "gs"}          # pyarrow filesystem type_name -> URI scheme, where they differ


def trial_location(trial) -> str:
    """The trial directory as lico_tune/storage names it: a local path, or a URI with its scheme. Ray's
    `trial.path` is the path inside the storage filesystem, which has no scheme (`lico/x/trial_1`)."""
    # tune/signed_fs.py wraps the storage filesystem in a pyarrow PyFileSystem: its type is 'py::<inner>'
    kind = trial.storage.storage_filesystem.type_name.removeprefix("py::")
    return str(trial.path) if kind == "local" else f"{_SCHEMES.get(kind, kind)}://{str(trial.path).lstrip('/')}"


def _artifact_files(trial_dir: str, into: Path) -> tuple[list[Path], Optional[Path]]:
    """The trial spec, provenance and metrics.json of a trial directory (local or s3://, gs://), and
    its gallery folder (None when it has none), as local files: copied into `into` when remote."""
    names = (layout.TRIAL_SPEC, layout.PROVENANCE, layout.METRICS_FILE)
    if not is_uri(trial_dir):
        root = Path(trial_dir)
        gallery = root / layout.GALLERY
        return [root / n for n in names if (root / n).is_file()], gallery if gallery.is_dir() else None
    storage, out = Storage(trial_dir), []
    for n in names:
        data = storage.read_bytes(join(trial_dir, n))
        if data is not None:
            (into / n).write_bytes(data)
            out.append(into / n)
    gallery = into / layout.GALLERY
    n = _download(storage, join(trial_dir, layout.GALLERY), gallery)
    return out, gallery if n else None


def _download(storage: Storage, remote: str, local: Path) -> int:
    """Copy a cloud folder (recursively) into a local one; returns how many files it copied."""
    n = 0
    for e in storage.list(remote):
        if e.is_dir:
            n += _download(storage, join(remote, e.name), local / e.name)
        elif (data := storage.read_bytes(join(remote, e.name))) is not None:
            local.mkdir(parents=True, exist_ok=True)
            (local / e.name).write_bytes(data)
            n += 1
    return n


def _copy_to_storage(local_dir: str, uri: str) -> None:
    """A local folder into a cloud directory (pyarrow's copy, as Ray's own syncer uses)."""
    import pyarrow.fs
    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    pyarrow.fs.copy_files(local_dir, path, source_filesystem=pyarrow.fs.LocalFileSystem(),
                          destination_filesystem=fs)


def final_metrics(trial_dir: str) -> Optional[dict[str, float]]:
    """The numeric metrics of a trial's metrics.json (None while it is not in storage)."""
    text = Storage(trial_dir).read_text(join(trial_dir, layout.METRICS_FILE))
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return tracked_metrics(data) if isinstance(data, dict) else None


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
        self._dropped: set[str] = set()         # trackers that failed during this run ('MLflow', 'W&B')

    def __getstate__(self):                    # Tune pickles the callbacks into tuner.pkl
        state = dict(self.__dict__)
        state.update(_mlflow=None, _mlflow_experiment_id=None, _mlflow_runs={}, _wandb_runs={}, _closing={},
                     _checked=0.0, _dropped=set())
        return state

    def __setstate__(self, state):             # a tuner.pkl of an older lico-tune lacks the newer fields
        self.__dict__.update({"_closing": {}, "_checked": 0.0, "_dropped": set(), **state})

    def _guard(self, tracker: str, call: Callable[[], Any]) -> None:
        """Run one tracker call; on any error drop that tracker for the rest of this run, with one
        warning line (a tracker is a mirror: losing it must not stop the sweep)."""
        if tracker in self._dropped:
            return
        try:
            call()
        except Exception as exc:
            self._dropped.add(tracker)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            print(f"warning: {tracker} logging stopped for this run: {type(exc).__name__}: {first}. The trials go on; "
                  f"their results are in {self.experiment_path}.", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ Tune hooks

    def setup(self, **info):
        if self.tracking.mlflow is not None:
            self._guard("MLflow", self._setup_mlflow)

    def _setup_mlflow(self) -> None:
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
                "ray.trial_dir": trial_location(trial), "arm": str(trial.config.get("arm", "-"))}
        if self._mlflow_experiment_id is not None and trial.trial_id not in self._mlflow_runs:
            self._guard("MLflow", lambda: self._mlflow_runs.update({trial.trial_id: self._mlflow_run(trial, params, tags)}))
        if self.tracking.wandb is not None and trial.trial_id not in self._wandb_runs:
            self._guard("W&B", lambda: self._wandb_runs.update({trial.trial_id: self._wandb_run(trial, params, tags)}))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        metrics = tracked_metrics(result)
        if not metrics:
            return
        epoch = int(result.get("epoch") or result.get("training_iteration") or 0)
        run_id = self._mlflow_runs.get(trial.trial_id)
        if run_id:
            from mlflow.entities import Metric
            now = int(time.time() * 1000)
            self._guard("MLflow", lambda: self._mlflow.log_batch(
                run_id, metrics=[Metric(k, v, now, epoch) for k, v in metrics.items()]))
        run = self._wandb_runs.get(trial.trial_id)
        if run is not None:
            self._guard("W&B", lambda: run.log({**metrics, "epoch": epoch}))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._closing[trial.trial_id] = (trial, time.time() + CLOSE_WAIT_S)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._closing.pop(trial.trial_id, None)
        self._end(trial, failed=True, final=None)

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        if not self._closing or now - self._checked < CHECK_EVERY_S:   # a look per second at most (a GET on s3://)
            return
        self._checked = now
        for trial_id, (trial, deadline) in list(self._closing.items()):
            final = final_metrics(trial_location(trial))
            if final is not None or now > deadline:
                self._closing.pop(trial_id)
                self._end(trial, failed=False, final=final)

    def on_experiment_end(self, trials, **info):
        for trial_id, (trial, _) in list(self._closing.items()):   # every actor has stopped and synced
            self._closing.pop(trial_id)
            self._end(trial, failed=False, final=final_metrics(trial_location(trial)))
        if self.tracking.wandb is not None:
            for trial_id in list(self._wandb_runs):          # runs of trials that never ended (a stopped sweep)
                run = self._wandb_runs.pop(trial_id)
                self._guard("W&B", run.finish)
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

    def _wandb_dir(self) -> str:
        cfg = self.tracking.wandb
        return cfg.dir or (self.experiment_path if not is_uri(self.experiment_path)
                           else str(layout.cache_path("wandb")))

    def _wandb_run(self, trial, params: dict, tags: dict):
        import wandb
        cfg = self.tracking.wandb
        directory = self._wandb_dir()
        Path(directory).mkdir(parents=True, exist_ok=True)
        run_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.experiment}-{trial.trial_id}")[:120]
        return wandb.init(project=cfg.project, entity=cfg.entity, mode=cfg.mode, dir=directory,
                          id=run_id, name=str(trial), group=self.experiment, config=params,
                          tags=[tags["arm"]], notes=f"Ray trial {trial.trial_id}: {tags['ray.trial_dir']}",
                          resume="allow", reinit="create_new")

    def _end(self, trial, failed: bool, final: Optional[dict[str, float]]) -> None:
        """Close the trial's tracker runs with its final metrics and artifacts."""
        trial_dir = trial_location(trial)
        with tempfile.TemporaryDirectory(prefix="lico-tracker-") as tmp:
            files, gallery = _artifact_files(trial_dir, Path(tmp))
            run_id = self._mlflow_runs.pop(trial.trial_id, None)
            if run_id:
                self._guard("MLflow", lambda: self._end_mlflow(run_id, trial, failed, final, files, gallery))
            run = self._wandb_runs.pop(trial.trial_id, None)
            if run is not None:
                self._guard("W&B", lambda: self._end_wandb(run, trial_dir, failed, final, files, gallery))

    def _end_mlflow(self, run_id: str, trial, failed: bool, final, files: list[Path], gallery: Optional[Path]) -> None:
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
            if gallery is not None:
                self._mlflow.log_artifacts(run_id, str(gallery), artifact_path=layout.GALLERY)
        location = trial_location(trial)
        if is_uri(location):
            self._mlflow.set_tag(run_id, "artifacts_uri", location)
        self._mlflow.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    def _end_wandb(self, run, trial_dir: str, failed: bool, final, files: list[Path], gallery: Optional[Path]) -> None:
        if final:
            run.summary.update(final)
        if self.tracking.wandb.artifacts and (files or gallery is not None):
            import wandb
            art = wandb.Artifact(f"gallery-{run.id}", type="saliency-gallery")
            if gallery is not None:
                art.add_dir(str(gallery))
            for file in files:
                art.add_file(str(file))
            run.log_artifact(art)
        copy = is_uri(trial_dir) and self.tracking.wandb.mode != "disabled"
        sync_dir = run.sync_dir if copy else None       # unreadable once the run is finished
        run.finish(exit_code=1 if failed else 0)
        if sync_dir:   # not only on the driver's disk: `wandb sync` works wherever the bucket can be read
            _copy_to_storage(sync_dir, join(trial_dir, "wandb", Path(sync_dir).name))
