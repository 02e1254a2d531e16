"""`resume` continues the experiment Ray saved, or refuses: never a fresh run in its directory.

When Ray Tune cannot restore an experiment's state (a damaged or missing experiment_state-*.json,
an unreadable searcher state...), its TuneController logs "Failed to restore the run state." and
"Restarting experiment.", and the run starts again from nothing, in the same directory, over the
results that were there (measured: a one-trial run replaced summary.json and exited 0). Two guards:

* `check_restorable`, before Ray starts: the newest state file, the one Ray would read, holds
  what a restore reads (results/tune_state.py `unrestorable`, no Ray).
* `no_fresh_start`, around `fit()`: anything else Ray fails to restore. Ray offers no hook there
  but its log record; a filter on that logger raises StateNotRestorable, which propagates out of
  the TuneController's constructor, before any trial starts or any state is written.

Either way the CLI exits 2 with one paragraph, and the directory is left as it was (the driver
record too: tune/driver.py puts it back).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from ..errors import SpecError
from ..results.tune_state import STATE_GLOB, is_state_file, unrestorable
from ..storage import Storage

RAY_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
RAY_RESTORE_FAILED = "Failed to restore the run state"
RAY_ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"
RAY_NO_METRICS_YET = "Failed to fetch metrics for"


class StateNotRestorable(SpecError):
    """Ray cannot restore this experiment's state; nothing was run and nothing changed."""


def refusal(experiment_dir: str, why: str) -> StateNotRestorable:
    storage = Storage(experiment_dir)
    older = sum(is_state_file(e.name) for e in storage.list(experiment_dir)) > 1
    return StateNotRestorable(
        f"{experiment_dir} cannot be resumed: {why}. Ray Tune would start the experiment again from nothing in "
        f"that directory, over its results, so lico-tune refuses and changed nothing. " +
        (f"It holds an older {STATE_GLOB} (one per driver session): moving the newest aside resumes from that "
         f"one (what the newest session recorded is then run again); or keep" if older else "Keep") +
        " the directory for its trials' results and start a new experiment with `lico-tune run` (another --name).")


def check_restorable(experiment_dir: str) -> None:
    why = unrestorable(Storage(experiment_dir), experiment_dir)
    if why is not None:
        raise refusal(experiment_dir, why)


class _RaiseOnRestoreFailure(logging.Filter):
    def __init__(self, experiment_dir: str):
        super().__init__()
        self.experiment_dir = experiment_dir

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(RAY_RESTORE_FAILED):
            exc = record.exc_info[1] if record.exc_info else None
            reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}" if exc else "no reason given"
            raise refusal(self.experiment_dir, f"Ray Tune failed to restore its state ({reason})")
        return True


@contextlib.contextmanager
def no_fresh_start(experiment_dir: str) -> Iterator[None]:
    logger = logging.getLogger(RAY_CONTROLLER_LOGGER)
    guard = _RaiseOnRestoreFailure(experiment_dir)
    logger.filters.insert(0, guard)           # first: a filter that drops the record would hide it from ours
    level = logger.level
    if not logger.isEnabledFor(logging.ERROR):  # a logger quieter than ERROR would never reach the filter
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.removeFilter(guard)
        logger.setLevel(level)


def _has_metrics_or_is_not_about_them(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(RAY_NO_METRICS_YET)


@contextlib.contextmanager
def no_pending_trial_warnings() -> Iterator[None]:
    """Around Tuner.restore: Ray reads every trial's results there and warns, one line per trial, of
    each that has none yet: every pending trial of a sweep (measured: 100 lines at the resume of a
    120-trial grid). A trial not started has no results; a damaged one is named by lico-tune's own
    results reader (`report`, the dashboard)."""
    logger = logging.getLogger(RAY_ANALYSIS_LOGGER)
    logger.addFilter(_has_metrics_or_is_not_about_them)
    try:
        yield
    finally:
        logger.removeFilter(_has_metrics_or_is_not_about_them)
