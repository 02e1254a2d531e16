"""A resumed trial continues from the newest checkpoint that storage holds, not the one Ray's snapshot names.

Ray's experiment snapshot reaches storage some steps behind the trials (every `num_to_keep`
checkpoints, and asynchronously). A driver killed in between leaves a snapshot that names a
trial's checkpoint which `num_to_keep` has since deleted, while storage holds newer ones: Ray's
restore then fails the trial for good ("Could not recover from checkpoint as it does not exist on
storage anymore", on every later resume too), and a trial that finished after the snapshot would
be trained again from an old checkpoint.

`StoredCheckpoints`, a callback in every lico-tune Tuner (and so in its tuner.pkl), runs once at the
first step of a resumed driver, before any trial starts: for each trial not finished, it points
Ray's checkpoint bookkeeping at the newest checkpoint directory that exists in storage and that the
trial's result.json records (a line is written only after its checkpoint was uploaded), with that
line's metrics; with none, the trial starts over. A trial that had finished restarts from its
final checkpoint and reports its recorded final metrics again (tune/trainable.py), so it ends with
the same numbers. Experiments made before this callback existed keep Ray's behaviour.
"""
from __future__ import annotations

import json
import logging
from pathlib import PurePosixPath
from typing import Optional

import pyarrow.fs as pafs
from ray.tune import Callback

from ..layout import CHECKPOINT_DIR_PREFIX, RESULT_FILE

log = logging.getLogger(__name__)


def _stored(trial) -> list[tuple[str, dict]]:
    """(checkpoint dir name, its result line) for each checkpoint of the trial that storage holds, oldest first."""
    fs, trial_path = trial.storage.storage_filesystem, trial.storage.trial_fs_path
    try:
        present = {i.base_name for i in fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
                   if i.type == pafs.FileType.Directory and i.base_name.startswith(CHECKPOINT_DIR_PREFIX)}
        with fs.open_input_stream(f"{trial_path}/{RESULT_FILE}") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except (FileNotFoundError, OSError):
        return []
    found: dict[str, dict] = {}
    for line in lines:
        try:
            result = json.loads(line)
        except ValueError:           # a line cut by the kill
            continue
        name = result.get("checkpoint_dir_name") if isinstance(result, dict) else None
        if name in present:
            found[name] = result
    return sorted(found.items())


def point_at_stored_checkpoint(trial) -> Optional[str]:
    """Repair one restored trial's checkpoint bookkeeping; returns what changed (None: nothing)."""
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    manager = trial.run_metadata.checkpoint_manager
    latest = manager.latest_checkpoint_result
    stored = _stored(trial)
    newest = stored[-1][0] if stored else None
    if latest is not None and PurePosixPath(latest.checkpoint.path).name == newest:
        return None
    if latest is None and newest is None:
        return None
    fs = trial.storage.storage_filesystem
    results = [_TrainingResult(checkpoint=Checkpoint(f"{trial.storage.trial_fs_path}/{name}", filesystem=fs),
                               metrics=metrics) for name, metrics in stored]
    manager._checkpoint_results = results                       # Ray keeps no public setter for these
    manager._latest_checkpoint_result = results[-1] if results else None
    if newest is not None:
        trial.storage.current_checkpoint_index = int(newest.removeprefix(CHECKPOINT_DIR_PREFIX))
    was = PurePosixPath(latest.checkpoint.path).name if latest is not None else "none"
    return f"{trial}: continues from {newest or 'the start'} (the experiment's snapshot named {was})"


class StoredCheckpoints(Callback):
    def __init__(self):
        self._done = False

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self._done = False

    def on_step_begin(self, iteration, trials, **info):
        if self._done:
            return
        self._done = True
        for trial in trials:
            if trial.status == "TERMINATED":
                continue
            try:
                said = point_at_stored_checkpoint(trial)
            except Exception as exc:       # never fail a sweep over this: Ray's own restore decides then
                log.warning("lico-tune could not check the stored checkpoints of %s: %s", trial, exc)
                continue
            if said:
                log.warning("%s", said)
