"""The driver's side of an experiment's liveness (results/liveness.py) and its clean-up.

    with driving(plan.experiment_path) as outcome:       # writes lico_driver.json: this PID, host
        results = tuner.fit()                            # DriverHeartbeat refreshes it every 30 s
        outcome.set("SIGINT")                            # or left at 'finished'
    # closed: ended + outcome ('failed' when fit raised); the trials' scratch folders are removed

A trial's scratch folder (`<tmp>/lico-<trial id>-*`: checkpoints before Tune copies them) is
removed by the trial itself, except when Tune kills its actor mid-trial (Ctrl-C, SIGTERM): then
`remove_scratch` removes it here, after Ray has stopped (local runs: the workers share this
machine's temp folder).
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import time
from typing import Iterable, Iterator

from ray.tune import Callback

from ..layout import scratch_prefix
from ..results.liveness import HEARTBEAT_S, driver_record, read_driver, write_driver
from ..storage import Storage


class Outcome:
    def __init__(self) -> None:
        self.value = "failed"       # unless the block says otherwise

    def set(self, value: str) -> None:
        self.value = value


@contextlib.contextmanager
def driving(experiment_path: str) -> Iterator[Outcome]:
    storage = Storage(experiment_path)
    record = driver_record()
    write_driver(storage, experiment_path, record)
    outcome = Outcome()
    try:
        yield outcome
    finally:
        now = time.time()
        record.update(heartbeat=now, ended=now, outcome=outcome.value)
        try:
            write_driver(storage, experiment_path, record)
        except OSError:
            pass


class DriverHeartbeat(Callback):
    """Refreshes the driver record's heartbeat while Tune runs (read by other hosts: a driver whose
    heartbeat is older than liveness.STALE_S is gone). Stateless, so it survives tuner.pkl."""

    def __init__(self, experiment_path: str, every_s: float = HEARTBEAT_S):
        self.experiment_path = experiment_path
        self.every_s = every_s
        self._last = 0.0

    def on_step(self, iteration, trials, **info):
        now = time.time()
        if now - self._last < self.every_s:
            return
        self._last = now
        try:
            storage = Storage(self.experiment_path)
            rec = read_driver(storage, self.experiment_path)
            if rec is not None and rec.get("pid") == os.getpid() and not rec.get("ended"):
                rec["heartbeat"] = now
                write_driver(storage, self.experiment_path, rec)
        except OSError:       # never fail a sweep over its heartbeat
            pass


def remove_scratch(trial_ids: Iterable[str]) -> list[str]:
    """Remove the scratch folders of these trials left in this machine's temp folder; returns them."""
    removed = []
    for tid in trial_ids:
        for path in glob.glob(os.path.join(tempfile.gettempdir(), glob.escape(scratch_prefix(tid)) + "*")):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
