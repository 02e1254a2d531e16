"""Ray Tune callbacks of a lico-tune sweep.

- `CatalogCallback`: keeps the results catalog current while a sweep runs. Each reported epoch,
  completion and error upserts that trial's row (read from the driver's copy of the trial
  directory, which Tune keeps current; storage lags until Tune syncs). The experiment is marked
  live, so the dashboard's `sync` does not overwrite those rows with older files. When the
  experiment ends (Tune has synced every file by then), the experiment is indexed again from
  storage. A catalog failure is logged, never fails the sweep.

      tune.RunConfig(..., callbacks=[CatalogCallback(storage_root)])   # optional db=URL

- `KeepResultsOnRetry`: before a failed trial is retried, upload its result.json and
  progress.csv from the driver to storage. Tune's loggers restore those files from storage when
  the retry starts; without this, epochs reported since the last experiment snapshot (every ~10 s)
  would vanish from them.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import pyarrow.fs
from ray.tune import Callback

from ..layout import CHECKPOINT_DIR_PREFIX, PROGRESS_FILE, RESULT_FILE
from ..results.catalog import Catalog
from ..results.trial_scan import scan_trial
from ..storage import Storage, join, normalise_root

log = logging.getLogger(__name__)


class CatalogCallback(Callback):
    def __init__(self, root: Optional[str] = None, db: Optional[str] = None, min_interval_s: float = 2.0):
        """root: the storage root (default: the Tuner's storage_path); db: a SQLAlchemy URL
        (default: the root's catalog, see `lico_tune.results.catalog.default_url`)."""
        self.root = normalise_root(root) if root else None
        self.db = db
        self.min_interval_s = min_interval_s
        self._catalog: Optional[Catalog] = None
        self._last: dict[str, float] = {}
        self._started: set[str] = set()
        self._failed = False

    def __getstate__(self):   # the Tuner is pickled for `restore`; an engine is not picklable
        state = dict(self.__dict__)
        state.update(_catalog=None, _last={}, _started=set(), _failed=False)
        return state

    # ------------------------------------------------------------------------- helpers

    def _cat(self, trial) -> Optional[Catalog]:
        if self._failed:
            return None
        if self._catalog is None:
            try:
                self.root = self.root or normalise_root(trial.storage.storage_path)
                self._catalog = Catalog(self.root, self.db, build=True)
            except Exception as exc:  # never fail a sweep over its catalog
                log.warning("lico-tune catalog disabled: %s", exc)
                self._failed = True
                return None
        return self._catalog

    def _put(self, trial, status: str, force: bool = True) -> None:
        now = time.time()
        if not force and now - self._last.get(trial.trial_id, 0.0) < self.min_interval_s:
            return
        cat = self._cat(trial)
        if cat is None:
            return
        self._last[trial.trial_id] = now
        try:
            exp = trial.storage.experiment_dir_name
            if exp not in self._started:
                storage = Storage(self.root)
                cat.index_experiment(storage, join(self.root, exp))   # the experiment row (spec, arms)
                self._started.add(exp)
            cat.heartbeat(exp, now)
            staging = Storage(trial.local_path)                      # the driver's current copy
            rec = scan_trial(staging, staging.root, staging.list(staging.root), exp, {}, None, trial.trial_id,
                             status=status)
            path = join(self.root, exp, trial.storage.trial_dir_name)
            ckpt = trial.checkpoint
            rec.update(path=path, trial_dir=trial.storage.trial_dir_name,
                       checkpoint=(join(self.root, exp, trial.storage.trial_dir_name, ckpt.path.rsplit("/", 1)[-1])
                                   if ckpt is not None else None),
                       gallery=None)
            rec["warnings"] = [w for w in rec["warnings"] if not w.startswith(f"no {CHECKPOINT_DIR_PREFIX}")]
            rec["damaged"] = bool(rec["warnings"])
            if rec["params"] == {} and trial.config:
                rec["params"] = {k: v for k, v in trial.config.items() if k != "arm"}
            cat.put_trials([rec])
        except Exception as exc:
            log.warning("lico-tune catalog: could not record trial %s: %s", trial.trial_id, exc)

    # ------------------------------------------------------------------------- Tune hooks

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._put(trial, "running", force=False)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._put(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._put(trial, "errored")

    def on_experiment_end(self, trials, **info):
        if not trials:
            return
        cat = self._cat(trials[0])
        if cat is None:
            return
        exp = trials[0].storage.experiment_dir_name
        try:
            cat.index(exp)            # storage is complete now: Tune synced before this hook
            cat.heartbeat(exp, None)
        except Exception as exc:
            log.warning("lico-tune catalog: could not index %s at the end: %s", exp, exc)


class KeepResultsOnRetry(Callback):
    def on_trial_recover(self, iteration, trials, trial, **info):
        for name in (RESULT_FILE, PROGRESS_FILE):
            local = Path(trial.local_path, name)
            if not local.exists():
                continue
            try:
                pyarrow.fs.copy_files(str(local), Path(trial.storage.trial_fs_path, name).as_posix(),
                                      destination_filesystem=trial.storage.storage_filesystem)
            except Exception as exc:  # never fail a sweep over this
                log.warning("could not upload %s of %s before its retry: %s", name, trial, exc)
