"""Is an experiment's driver still running? The fact that turns Ray's saved statuses into true ones.

Ray Tune saves a trial that was running when its driver stopped (Ctrl-C, SIGTERM, SIGKILL, a
crash) as RUNNING, and `ray.tune.ExperimentAnalysis` reads it back as PENDING: neither says that
nothing runs it any more. So `lico-tune run` and `resume` keep one small record of their driver
in the experiment directory, `lico_driver.json` (DRIVER_FILE):

    {"pid": 1234, "host": "node-1", "proc_start": "81234", "started": 1764900000.0,
     "heartbeat": 1764900030.0, "ended": null, "outcome": null}

written when the driver starts, refreshed every HEARTBEAT_S while it runs (a Tune callback), and
closed with `ended` and `outcome` ('finished', 'SIGINT', 'SIGTERM', 'failed': an exception) when it
stops. A SIGKILLed driver closes nothing; it is found dead by facts, not by trusting its clock
(`driver_verdict` says which rule decided):
- same host: by its PID (the process is gone, or the PID now belongs to another process);
- another host (its process cannot be checked): alive only while its heartbeat is recent by the
  reader's clock (under STALE_S old) and not in the future by more than FUTURE_TOLERANCE_S (clock
  skew, or a record written by hand: a heartbeat a day ahead, or 1e308, would otherwise read
  "running" forever).

`driver_state` gives the experiment's state; `true_status` the status of a trial under it: a
trial Ray left RUNNING, PENDING or PAUSED in an experiment whose driver is gone is 'interrupted'.
No Ray import: the report and the dashboard read this on machines without Ray.
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from typing import Optional

from ..layout import DRIVER_FILE, SUMMARY_FILE
from ..storage import Storage, join
from ..storage.safe_files import parse_json

HEARTBEAT_S = 30.0          # how often a running driver refreshes its heartbeat
STALE_S = 4 * HEARTBEAT_S   # a heartbeat older than this (another host's driver) means the driver is gone
FUTURE_TOLERANCE_S = 300.0  # how far ahead of the reader's clock another host's heartbeat may be (clock skew)
LEGACY_RECENT_S = 900       # experiments from before DRIVER_FILE: live when their files changed this recently
UNFINISHED = ("running", "pending", "paused")


def _proc_start(pid: int) -> Optional[str]:
    """The start time of process `pid` (field 22 of /proc/PID/stat), None when there is no such process.
    With it a PID reused by another process is not taken for the driver."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        if not os.path.isdir("/proc"):          # not Linux: only whether the PID exists
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                pass
            return "?"
        return None
    if fields[0] == b"Z":                       # a zombie has ended
        return None
    return fields[19].decode()


def driver_record(pid: Optional[int] = None) -> dict:
    """A new record of this process as an experiment's driver."""
    pid = pid or os.getpid()
    now = time.time()
    return {"pid": pid, "host": socket.gethostname(), "proc_start": _proc_start(pid), "started": now,
            "heartbeat": now, "ended": None, "outcome": None}


def write_driver(storage: Storage, experiment_path: str, record: dict) -> None:
    """Write the record (locally an atomic replace, so that a reader never sees half a file)."""
    storage.write_text(join(experiment_path, DRIVER_FILE), json.dumps(record, indent=1))


def read_driver(storage: Storage, experiment_path: str) -> Optional[dict]:
    """The driver record; None when there is none or it is damaged (UnsafeFile: a FIFO, a device...)."""
    text = storage.read_text(join(experiment_path, DRIVER_FILE))
    try:
        rec = parse_json(text) if text is not None else None
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def driver_verdict(rec: dict, now: Optional[float] = None) -> tuple[bool, str]:
    """(whether the driver of a record is still running, the rule that decided, as a phrase)."""
    if rec.get("ended"):
        return False, "its record is closed"
    pid, host = rec.get("pid"), rec.get("host")
    if host == socket.gethostname() and isinstance(pid, int) and not isinstance(pid, bool):
        start = _proc_start(pid)
        if start is None:
            return False, f"no process {pid} runs on this host"
        if rec.get("proc_start") not in (None, "?") and start != rec["proc_start"]:
            return False, f"pid {pid} on this host is now another process (it started at another time)"
        return True, f"process {pid} runs on this host"
    beat = rec.get("heartbeat")
    if not isinstance(beat, (int, float)) or isinstance(beat, bool) or not math.isfinite(beat):
        return False, f"host {host} cannot be checked from here and its heartbeat is not a time ({beat!r})"
    age = (now if now is not None else time.time()) - beat
    if age < -FUTURE_TOLERANCE_S:
        return False, (f"host {host} cannot be checked from here and its heartbeat is {-age:.0f} s in the future by "
                       f"this machine's clock (over the {FUTURE_TOLERANCE_S:.0f} s of clock skew allowed)")
    if age >= STALE_S:
        return False, f"host {host} cannot be checked from here and its last heartbeat is {age:.0f} s old"
    return True, f"host {host} cannot be checked from here; its heartbeat is {max(age, 0):.0f} s old"


def driver_alive(rec: dict, now: Optional[float] = None) -> bool:
    """Whether the driver of a record that was not closed is still running (see driver_verdict)."""
    return driver_verdict(rec, now)[0]


@dataclass
class DriverState:
    live: bool                    # a driver is running this experiment now
    state: str                    # 'running', 'finished', 'interrupted'
    why: str                      # one line: 'SIGINT', 'driver gone (pid 123 on host h)', ...


def driver_state(storage: Storage, path: str, newest_mtime: Optional[float] = None) -> DriverState:
    """The experiment's state from its driver record (older experiments: from summary.json, else
    from how recently its files changed: `newest_mtime`, read from the directory when not given)."""
    rec = read_driver(storage, path)
    if rec is not None:
        alive, rule = driver_verdict(rec)
        if alive:
            return DriverState(True, "running", f"driver pid {rec.get('pid')} on {rec.get('host')} ({rule})")
        outcome = rec.get("outcome")
        if outcome == "finished":
            return DriverState(False, "finished", "finished")
        if outcome in ("SIGINT", "SIGTERM"):
            return DriverState(False, "interrupted", f"stopped by {outcome}")
        if outcome:
            return DriverState(False, "interrupted", f"its driver {outcome}")
        return DriverState(False, "interrupted", f"its driver, pid {rec.get('pid')} on {rec.get('host')}, is gone "
                                                 f"(killed or crashed: {rule})")
    summary = storage.read_text(join(path, SUMMARY_FILE))
    if summary is not None:
        try:
            rows = parse_json(summary)
            first = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
        except ValueError:
            first = {}
        if first.get("interrupted"):
            return DriverState(False, "interrupted", f"stopped by {first['interrupted']}")
        return DriverState(False, "finished", "summary written")
    if newest_mtime is None:
        newest_mtime = max((e.mtime for e in storage.list(path)), default=0.0)
    if time.time() - newest_mtime < LEGACY_RECENT_S:
        return DriverState(True, "running", "files changed recently (no driver record)")
    return DriverState(False, "interrupted", "no driver record and no summary")


def true_status(status: str, driver: DriverState) -> str:
    """A trial's status as it is: one Ray left unfinished under a driver that is gone was interrupted."""
    if not driver.live and status in UNFINISHED:
        return "interrupted"
    return status
