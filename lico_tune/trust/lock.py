"""One driver per experiment: `run` and `resume` hold the experiment's lock file while they drive it.

    with experiment_lock(plan.experiment_path, say=print):    # or ExperimentBusy (exit 2), naming the holder
        ...                                                    # init Ray, fit, summarise

The lock file, LOCK_FILE (lico_driver.lock) in the experiment directory, holds the same record as
the driver file results/liveness.py reads (PID, host, the process's start time, when it started),
so the holder is judged alive by the same rule as a driver: on this host by its PID (and start
time, so that a reused PID is not taken for it), on another host by the heartbeat of the driver
file it writes every 30 s. Two mechanisms make it safe:

* On a local or network filesystem the file is also `flock`ed: the kernel drops that lock when the
  holder dies however it dies (SIGKILL, a crash), so only one process can hold it at a time, and a
  file left by a dead holder is taken over with a one-line notice. (Removing the file on release
  while another process opens it is the classic race of lock files: after locking, the holder
  checks that the path still names the file it locked, and tries again otherwise.)
* On cloud storage (s3://, gs://) there is no atomic create nor a lock: the lock is advisory. A
  running driver's record (a fresh heartbeat) is refused, but two drivers started in the same few
  seconds can both pass. Start one experiment's driver from one place.

It is released (the file removed) on every exit but SIGKILL: a normal end, an error, Ctrl-C (the
graceful stop in interrupt.py, or KeyboardInterrupt) and SIGTERM (turned into SystemExit while the
lock is held, when nothing else handles it). No Ray import: `lico-tune resume` takes it before
importing Ray (a refusal in a second), and tune/run.py's `run` and `resume` take it again (the same
process: a no-op), so that every caller of theirs is covered.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import threading
import time
from typing import Callable, Iterator, Optional

from ..errors import ExperimentBusy
from ..layout import LOCK_FILE
from ..results.liveness import driver_alive, driver_record, read_driver
from ..storage import Storage, join, normalise_root
from ..storage.safe_files import open_regular, parse_json

try:
    import fcntl
except ImportError:           # not POSIX: the record alone decides, as on cloud storage
    fcntl = None

_HELD: dict[str, dict] = {}   # experiment path -> this process's record (re-entrant: resume() inside the CLI's lock)


@contextlib.contextmanager
def experiment_lock(experiment_path: str, say: Callable[[str], None] = print) -> Iterator[dict]:
    """Hold the experiment's lock for the block; raises ExperimentBusy when another driver holds it."""
    path = normalise_root(experiment_path)
    if path in _HELD:
        yield _HELD[path]
        return
    storage = Storage(path)
    lock = _LocalLock(path) if storage.is_local else _AdvisoryLock(storage, path)
    record = lock.acquire(say)
    _HELD[path] = record
    old_term = _exit_on_sigterm()
    try:
        yield record
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        _HELD.pop(path, None)
        lock.release()


def holder_alive(storage: Storage, experiment_path: str, rec: dict) -> bool:
    """Whether the process a lock record names still drives the experiment: by its PID on this host,
    else by a fresh start or the heartbeat of the driver file it writes (results/liveness.py)."""
    if driver_alive(rec):
        return True
    driver = read_driver(storage, experiment_path) or {}
    same = driver.get("pid") == rec.get("pid") and driver.get("host") == rec.get("host")
    return same and driver_alive(driver)


def busy(experiment_path: str, rec: dict, why: str = "") -> ExperimentBusy:
    """The refusal naming the holder of the lock. A record whose fields are not what lico-tune writes
    (a damaged or hand-edited file) is refused as such, its bad values shown as JSON on one line."""
    lock_file = join(experiment_path, LOCK_FILE)
    pid, host, started = rec.get("pid", "?"), rec.get("host", "?"), rec.get("started")
    when = "at an unknown time" if started is None else _when(started)   # None: not a time
    bad = {"pid": not (pid == "?" or _is_pid(pid)), "host": not (host == "?" or _is_host(host)),
           "started": when is None}
    pid_text, host_text = (_shown(pid) if bad["pid"] else pid), (_shown(host) if bad["host"] else host)
    if any(bad.values()):
        damage = "; ".join(f"its '{k}' is {_shown(rec.get(k))}, not {what}" for k, what in
                           (("pid", "a process id"), ("host", "a host name"), ("started", "a time")) if bad[k])
        return ExperimentBusy(
            f"The lock file {lock_file} is damaged: {damage}. lico-tune writes the driver's pid, host and start "
            f"time there; this record names pid {pid_text} on host {host_text}, which lico-tune judges alive"
            f"{why}, so it will not take the lock over. If no lico-tune driver runs {experiment_path} now, remove "
            f"the file ({lock_file}) and run the command again; if one does, wait for it to end.")
    return ExperimentBusy(
        f"{experiment_path} is being run by another lico-tune driver: pid {pid} on host {host}, started {when}, "
        f"holds its lock {lock_file}{why}. One driver per experiment at a time: wait for "
        f"it to end (or stop it with `kill -INT {pid}` on {host}), then `lico-tune resume {experiment_path}` "
        f"if it did not finish. If that process is gone for good (its host crashed), remove the lock file.")


def _when(started) -> Optional[str]:
    """A record's start time (seconds since the epoch) as local time; None when it is not one."""
    if isinstance(started, bool) or not isinstance(started, (int, float)) or not started >= 0:   # NaN fails >=
        return None
    try:
        return dt.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):    # past year 9999 (1e308), inf
        return None


def _is_pid(pid) -> bool:
    return isinstance(pid, int) and not isinstance(pid, bool) and pid > 0


def _is_host(host) -> bool:
    return isinstance(host, str) and 0 < len(host) <= 255 and host.isprintable()


def _shown(value, limit: int = 60) -> str:
    """A value of a record as one short line (JSON escapes newlines)."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _took_over(say: Callable[[str], None], lock_path: str, rec: dict) -> None:
    say(f"notice: took over the lock {lock_path} left by pid {rec.get('pid', '?')} on host {rec.get('host', '?')}, "
        f"which no longer runs (killed or crashed)")


def _parse(text: Optional[str]) -> Optional[dict]:
    """The record in a lock file; None when there is none (an empty file: just created)."""
    if not text:
        return None
    try:
        rec = parse_json(text)
    except ValueError:
        return {}                      # a damaged record: nobody we could name holds it
    return rec if isinstance(rec, dict) else {}


def _holder_record(fd: int, wait_s: float = 2.0) -> dict:
    """The record of the process holding the flock on `fd`'s file. A holder writes it just after it
    takes the flock (truncating first), so an empty or half-written file is read again for up to
    `wait_s` before the holder is called unknown (measured: a busy machine showed 'pid ?')."""
    deadline = time.monotonic() + wait_s
    while True:
        rec = _parse(os.pread(fd, 1 << 16, 0).decode(errors="replace"))
        if (rec and "pid" in rec) or time.monotonic() > deadline:
            return rec or {}
        time.sleep(0.02)


class _LocalLock:
    def __init__(self, path: str):
        self.path, self.file = path, join(path, LOCK_FILE)
        self.fd: Optional[int] = None
        self.created: list[str] = []   # directories made for the lock, removed again if left empty

    def acquire(self, say: Callable[[str], None]) -> dict:
        self._make_dirs()
        storage = Storage(self.path)
        while True:
            fd = open_regular(self.file, os.O_RDWR | os.O_CREAT, within=self.path)   # no FIFO, no link out
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise busy(self.path, _holder_record(fd))
                    except OSError:    # a filesystem without flock (some FUSE mounts): the record alone decides
                        pass
                try:
                    same = os.stat(self.file).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:           # released and removed between our open and our lock: try again
                    os.close(fd)
                    continue
                previous = _parse(os.pread(fd, 1 << 16, 0).decode(errors="replace"))
                if previous and holder_alive(storage, self.path, previous):
                    # flock granted, yet the holder lives: another host on a filesystem whose flock is local only
                    raise busy(self.path, previous)
                if previous is not None:
                    _took_over(say, self.file, previous)
                record = driver_record()
                data = json.dumps(record, indent=1).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                self._remove_dirs()
                raise
            self.fd = fd
            return record

    def release(self) -> None:
        try:
            os.unlink(self.file)       # before the flock goes: see the module's docstring
        except FileNotFoundError:
            pass
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self._remove_dirs()

    def _make_dirs(self) -> None:
        missing, d = [], self.path
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            try:
                os.mkdir(d)
                self.created.append(d)
            except FileExistsError:
                pass

    def _remove_dirs(self) -> None:
        for d in reversed(self.created):   # only the ones we made, and only when nothing was put there
            try:
                os.rmdir(d)
            except OSError:
                break
        self.created = []


class _AdvisoryLock:
    """Cloud storage: no atomic create, no lock; a live driver's record is refused (see the docstring)."""

    def __init__(self, storage: Storage, path: str):
        self.storage, self.path, self.file = storage, path, join(path, LOCK_FILE)

    def acquire(self, say: Callable[[str], None]) -> dict:
        previous = _parse(self.storage.read_text(self.file))
        if previous and holder_alive(self.storage, self.path, previous):
            raise busy(self.path, previous, " (cloud storage: the lock is advisory)")
        if previous is not None:
            _took_over(say, self.file, previous)
        record = driver_record()
        self.storage.write_text(self.file, json.dumps(record, indent=1))
        return record

    def release(self) -> None:
        try:
            self.storage.remove(self.file)
        except OSError:
            pass


def _exit_on_sigterm():
    """While the lock is held, SIGTERM (default: die at once, no clean-up) raises SystemExit(143), so
    that the lock is released; returns the handler to put back (None: left alone)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def handler(_signum, _frame):
        raise SystemExit(128 + signal.SIGTERM)
    return signal.signal(signal.SIGTERM, handler)
