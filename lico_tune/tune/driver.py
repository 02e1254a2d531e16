"""The driver's side of an experiment's liveness (results/liveness.py) and its clean-up.

    with driving(plan.experiment_path) as outcome:       # writes lico_driver.json: this PID, host
        results = tuner.fit()                            # a thread refreshes its heartbeat every 30 s
        outcome.set("finished")                          # or "SIGINT", ...
    # closed: ended + outcome ('failed' when fit raised); put back as it was when Ray could not
    # restore the experiment (restore.StateNotRestorable: this driver ran nothing)

The heartbeat is a thread of the driver, not a Tune callback: a callback would live in tuner.pkl,
and experiments pickled before it existed would resume without one.

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
import threading
import time
from typing import Iterable, Iterator

from ..layout import DRIVER_FILE, scratch_prefix
from ..results.liveness import HEARTBEAT_S, driver_record, write_driver
from ..storage import Storage, join
from .restore import StateNotRestorable


class Outcome:
    def __init__(self) -> None:
        self.value = "failed"       # unless the block says otherwise

    def set(self, value: str) -> None:
        self.value = value


@contextlib.contextmanager
def driving(experiment_path: str, every_s: float = HEARTBEAT_S) -> Iterator[Outcome]:
    storage = Storage(experiment_path)
    previous = storage.read_text(join(experiment_path, DRIVER_FILE))
    record = driver_record()
    write_driver(storage, experiment_path, record)
    outcome, stop = Outcome(), threading.Event()

    def beat() -> None:          # read by other hosts: a heartbeat older than liveness.STALE_S = gone
        while not stop.wait(every_s):
            try:
                write_driver(storage, experiment_path, {**record, "heartbeat": time.time()})
            except OSError:      # never fail a sweep over its heartbeat
                pass

    thread = threading.Thread(target=beat, name="lico-tune-heartbeat", daemon=True)
    thread.start()
    ran = True
    try:
        yield outcome
    except StateNotRestorable:
        ran = False
        raise
    finally:
        stop.set()
        thread.join()
        if ran:
            now = time.time()
            record.update(heartbeat=now, ended=now, outcome=outcome.value)
            try:
                write_driver(storage, experiment_path, record)
            except OSError:
                pass
        else:
            _put_back(storage, experiment_path, previous)


def _put_back(storage: Storage, experiment_path: str, previous: str | None) -> None:
    """The driver record as it was before this driver, which ran nothing, wrote its own."""
    path = join(experiment_path, DRIVER_FILE)
    try:
        if previous is None:
            storage.remove(path)
        else:
            storage.write_text(path, previous)
    except OSError:
        pass


def remove_scratch(trial_ids: Iterable[str]) -> list[str]:
    """Remove the scratch folders of these trials left in this machine's temp folder; returns them."""
    removed = []
    for tid in trial_ids:
        for path in glob.glob(os.path.join(tempfile.gettempdir(), glob.escape(scratch_prefix(tid)) + "*")):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
