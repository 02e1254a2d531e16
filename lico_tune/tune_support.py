"""Small Ray Tune extensions used by `lico_tune.search`. This module imports ray: import it only
where a Tuner is built.

- `LicoOptunaSearch`: OptunaSearch that skips intermediate results lacking the metric (with
  `eval.every` > 1, or saliency metrics that only come at the end).
- `KeepResultsOnRetry`: before a failed trial is retried, upload its result.json and
  progress.csv from the driver to storage. Tune's loggers restore those files from storage when
  the retry starts; without this, epochs reported since the last experiment snapshot (every ~10 s)
  would vanish from them.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.fs
from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)

RESULT_FILES = ("result.json", "progress.csv")


class LicoOptunaSearch(OptunaSearch):
    def on_trial_result(self, trial_id: str, result: dict):
        if isinstance(self.metric, str) and self.metric not in result:
            return
        super().on_trial_result(trial_id, result)


class KeepResultsOnRetry(Callback):
    def on_trial_recover(self, iteration, trials, trial, **info):
        for name in RESULT_FILES:
            local = Path(trial.local_path, name)
            if not local.exists():
                continue
            try:
                pyarrow.fs.copy_files(str(local), Path(trial.storage.trial_fs_path, name).as_posix(),
                                      destination_filesystem=trial.storage.storage_filesystem)
            except Exception as exc:  # never fail a sweep over this
                log.warning("could not upload %s of %s before its retry: %s", name, trial, exc)
