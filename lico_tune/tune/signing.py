"""Keep an experiment's signed manifest (trust.py) current while Ray Tune writes its state.

Ray saves its state inside the controller's step: the experiment_state-*.json, then the
searcher's state, then the callbacks' states, all into the driver's local staging copy of the
experiment's top level, which it then uploads to storage. `SignOnSave.get_state` is called in
that save, after the files Ray wrote: it signs the staged files (Ray's own writes) and writes the
manifest into the staging copy, so it is uploaded with them; the other top-level files are signed
only with the digest the driver signed or verified before (`remember`), so a file that appeared
in storage while the driver ran stays unsigned (resume refuses it). tune/run.py also signs once
Ray wrote tuner.pkl and when the driver ends.

The callback is pickled into tuner.pkl and restored by `resume`: it holds no key and no path (the
experiment's path is read from Ray's trials, so a moved experiment signs where it now lies).
"""
from __future__ import annotations

import logging
from typing import Optional

from ray.tune import Callback

from ..errors import BadInput
from ..storage import normalise_root
from ..trust import sign_experiment

log = logging.getLogger(__name__)

_KNOWN: dict[str, dict[str, str]] = {}      # experiment path -> {file: SHA-256} this driver signed or verified
_STAGED: set[str] = set()                   # experiments a SignOnSave signed in this driver


def remember(experiment_path: str, files: dict[str, str]) -> None:
    _KNOWN[normalise_root(experiment_path)] = dict(files)


def sign_at_end(experiment_path: str) -> None:
    """Sign what the driver leaves (the Tuner returned, a signal stopped it, or it failed), never
    raising: the sweep's outcome stands; resume refuses what is unsigned. A file is signed with the
    digest this driver knows; an experiment without SignOnSave (made by an older lico-tune, then
    trusted) is signed as found."""
    path = normalise_root(experiment_path)
    try:
        remember(path, sign_experiment(path, known=_KNOWN.get(path) if path in _STAGED else None))
    except (OSError, BadInput) as exc:
        log.warning("lico-tune could not sign %s (resume will refuse it until `lico-tune trust`): %s", path, exc)


def _where(trial) -> str:
    """The experiment as lico-tune names it: a local path, s3://... or gs://..."""
    fs, path = trial.storage.storage_filesystem, trial.storage.experiment_fs_path
    return normalise_root({"s3": "s3://", "gcs": "gs://"}.get(fs.type_name, "") + path)


class SignOnSave(Callback):
    def __init__(self):
        self._trial = None

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self._trial = None

    def on_step_begin(self, iteration, trials, **info):
        if trials:
            self._trial = trials[0]

    def get_state(self) -> Optional[dict]:
        """Called by Ray's save, after the state files: sign them. Returns None (no state of its own)."""
        if self._trial is None:
            return None
        try:
            where = _where(self._trial)
            staged = self._trial.storage.experiment_driver_staging_path
            remember(where, sign_experiment(where, staged=staged, known=_KNOWN.get(where, {})))
            _STAGED.add(where)
        except Exception as exc:    # never fail a sweep over this; resume refuses what is unsigned
            log.warning("lico-tune could not sign the experiment's saved state: %s", exc)
        return None
