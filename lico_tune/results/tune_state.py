"""The one adapter between lico-tune's Ray-free readers and Ray Tune's experiment state.

Ray's public reader, `ray.tune.ExperimentAnalysis(path)`, needs ray (and unpickles trial
objects); the report, the catalog and the dashboard must work without ray, on a laptop with only
the results. So this module reads the one thing they need from Ray's files, the status, directory,
config and last epoch of every trial, following Ray's own rules:

* **Which state file.** Ray writes `experiment_state-<session time>.json` per driver session
  (`TuneController.CKPT_FILE_TMPL`, the time formatted `%Y-%m-%d_%H-%M-%S`), and a restore reads
  `max()` of the matching *names* (`ray.tune.execution.experiment_state.
  _find_newest_experiment_checkpoint`, used by `ExperimentAnalysis` and `Tuner.restore`). File
  mtimes do not order sessions: after a SIGKILLed driver is resumed, Ray re-syncs the old file and
  it can end up newer than the resumed session's. We take the newest name, as Ray does.
* **What a trial's entry holds.** `trial_data` is a list of `[json_state, runtime_metadata]`
  pairs, as `Trial.get_json_state()` writes them; `Trial.from_json_state` reads `trial_id`,
  `status`, `relative_logdir`, `config`; `restore_run_metadata` reads `last_result`,
  `error_filename`, `num_failures`.

tests/tune/test_resume.py checks both rules against `ExperimentAnalysis` on an experiment that Ray
itself wrote, was SIGKILLed and resumed.
"""
from __future__ import annotations

import fnmatch
from typing import Iterable, Optional

from ..storage import Storage, join
from ..storage.safe_files import parse_json

STATE_PREFIX = "experiment_state-"
STATE_GLOB = STATE_PREFIX + "*.json"      # Ray's TuneController.CKPT_FILE_TMPL.format("*")
TUNE_STATUS = {"TERMINATED": "finished", "ERROR": "errored", "RUNNING": "running", "PENDING": "pending",
               "PAUSED": "paused"}


def is_state_file(name: str) -> bool:
    return fnmatch.fnmatch(name, STATE_GLOB)


def latest_state_name(names: Iterable[str]) -> Optional[str]:
    """The state file Ray itself would restore from: the greatest matching name (not the newest mtime)."""
    matching = [n for n in names if is_state_file(n)]
    return max(matching) if matching else None


def unrestorable(storage: Storage, path: str) -> Optional[str]:
    """Why Ray could not restore the experiment at `path` from its newest state file (the one it
    would read), or None when that file holds what a restore reads: `trial_data`, a list of
    [json_state, runtime_metadata] pairs each naming its trial_id, and `runner_data`. (Ray itself,
    when the restore fails, starts the experiment afresh in the same directory: see tune/restore.py.)"""
    name = latest_state_name(e.name for e in storage.list(path))
    if name is None:
        return f"it holds no Ray Tune experiment state ({STATE_GLOB}; Ray writes it once the first trial starts)"
    text = storage.read_text(join(path, name))
    try:
        data = parse_json(text) if text is not None else None
    except ValueError as exc:
        return f"its newest state file {name} is not valid JSON ({exc}): damaged or cut short"
    if data is None:
        return f"its newest state file {name} cannot be read"
    items = data.get("trial_data") if isinstance(data, dict) else None
    if not isinstance(items, list) or not isinstance(data.get("runner_data"), dict):
        return f"its newest state file {name} lacks the trial_data list or the runner_data Ray restores from"
    if not items:                       # Ray's restore reads trials[0]
        return f"its newest state file {name} records no trial"
    for i, item in enumerate(items):
        try:
            state = parse_json(item[0]) if isinstance(item[0], str) else item[0]
            ok = len(item) == 2 and isinstance(state, dict) and isinstance(state.get("trial_id"), str)
        except (TypeError, ValueError, IndexError, KeyError):
            ok = False
        if not ok:
            return f"entry {i} of trial_data in its newest state file {name} is not a trial Ray can read"
    return None


def read_state(storage: Storage, path: str, state_name: Optional[str]) -> dict[str, dict]:
    """trial_id -> {status, dir, config, error_file, last_epoch, num_failures} from Tune's
    experiment state ({} when there is none yet or it cannot be read)."""
    if not state_name:
        return {}
    text = storage.read_text(join(path, state_name))
    try:
        data = parse_json(text) if text is not None else None
    except ValueError:
        return {}
    out: dict[str, dict] = {}
    if not isinstance(data, dict):
        return out
    items = data.get("trial_data")
    for item in items if isinstance(items, list) else []:      # a damaged file reads as no trials
        try:
            state = parse_json(item[0]) if isinstance(item[0], str) else item[0]
            meta = parse_json(item[1]) if isinstance(item[1], str) else item[1]
            last = meta.get("last_result") or {}
            out[state["trial_id"]] = {
                "status": state.get("status"), "dir": state.get("relative_logdir") or state.get("custom_dirname"),
                "config": state.get("config") if isinstance(state.get("config"), dict) else None,
                "error_file": meta.get("error_filename"), "num_failures": meta.get("num_failures", 0),
                "last_epoch": last.get("epoch", last.get("training_iteration"))}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            continue
    return out
