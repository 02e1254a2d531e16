"""What `lico-tune run` prints while trials run: one line per trial event (start, epoch, finish,
error, retry) and a compact status line every `interval_s` seconds, instead of Ray's full status
table (`lico-tune run --verbose` keeps that table, `tuner.reporter`).

    12:01:05 start   3f2a1_00000 arm ce  lr=0.05
    12:01:09 epoch 1 3f2a1_00000 arm ce  acc 81.3  train/loss 0.412
    12:01:12 done    3f2a1_00000 arm ce  acc 84.7  saliency/gradcam/overall 0.213
    12:02:40 health  3f2a1_00001 arm mm  MM inactive: tau grew to 2.4 and MM at the reference ...
    12:03:02 done    3f2a1_00001 arm mm  acc 84.6  health: MM inactive
    12:01:30 status  2 running, 1 finished, 0 errored, 5 pending (of 8); 0:00:25 elapsed
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Optional

from ray.tune import Callback

from ..errors import error_reason
from ..keys import HEALTH_WARNINGS, read_health_warnings
from .retry import retryable_text


def _short(name: str) -> str:
    return name.removeprefix("test/")


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.4g}"


class TrialEvents(Callback):
    """One line per trial event and a status line every `interval_s` seconds (0: none). The
    metrics shown are `metrics` (the spec's search metrics with test/acc first); only what a
    result carries (finite) is shown. A health warning (a LICO term inactive, a trial at chance) gets
    a line of its own when a result first carries it, and its kind is repeated on the trial's done
    line: a term that trained nothing must not pass unseen behind a good accuracy. Printing goes to
    the driver's standard output."""

    def __init__(self, metrics: list[str], n_trials: Optional[int] = None, interval_s: float = 30.0):
        self.metrics = list(dict.fromkeys(["test/acc", *metrics]))
        self.n_trials, self.interval_s = n_trials, interval_s
        self.started = self.last_status = None
        self.warned: dict[str, list] = {}  # trial id -> the HealthWarning values already printed

    def _say(self, event: str, trial, text: str = "") -> None:
        arm = (trial.config or {}).get("arm")
        who = f"{trial.trial_id}" + (f" arm {arm}" if arm else "")
        print(f"{time.strftime('%H:%M:%S')} {event:<8} {who}" + (f"  {text}" if text else ""), flush=True)

    def _values(self, result: dict) -> str:
        shown = []
        for m in self.metrics:
            v = result.get(m)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                shown.append(f"{_short(m)} {_fmt(float(v))}")
        return "  ".join(shown)

    def on_trial_start(self, iteration, trials, trial, **info):
        params = {k: v for k, v in (trial.config or {}).items() if k != "arm"}
        shorts = [k.split(".")[-1] for k in params]
        # 'seed=0' rather than 'train.seed=0', unless two paths share the last part or it says
        # little ('data.name', not 'name').
        names = {k: s if shorts.count(s) == 1 and s != "name" else k for k, s in zip(params, shorts)}
        self._say("start", trial, " ".join(f"{names[k]}={_fmt(v) if isinstance(v, float) else v}"
                                           for k, v in params.items()))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._say(f"epoch {result.get('epoch', '?')}", trial, self._values(result))
        warned = self.warned.setdefault(trial.trial_id, [])
        for w in read_health_warnings(result.get(HEALTH_WARNINGS)):
            if w not in warned:
                warned.append(w)
                self._say("health", trial, str(w))

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        kinds = list(dict.fromkeys(w.kind for w in read_health_warnings(result.get(HEALTH_WARNINGS))))
        self._say("done", trial, "  ".join(filter(None, [self._values(result),
                                                         "health: " + ", ".join(kinds) if kinds else ""])))

    def on_trial_recover(self, iteration, trials, trial, **info):
        n, limit = trial.run_metadata.num_failures, trial.max_failures
        of = "" if limit < 0 else f" {n} of {limit}"
        self._say("retry", trial, f"{_reason(trial) or 'failed'}; retry{of}, from its last checkpoint if it wrote one")

    def on_trial_error(self, iteration, trials, trial, **info):
        why = _reason(trial)
        final = " (not retried: a retry cannot fix it)" if why and not retryable_text(why) else ""
        self._say("ERROR", trial, (why or "failed (see error.txt in its directory)") + final)

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if self.started is None:
            self.started = self.last_status = now
        if not self.interval_s or now - self.last_status < self.interval_s:
            return
        self.last_status = now
        print(status_line(trials, self.n_trials, now - self.started), flush=True)


class _NoTrialTracebacks(logging.Filter):
    """Drops Tune's 'Trial task failed for trial ...' record (its traceback is in the trial's error.txt
    and train.log) and its 'Trials did not complete' summary: the ERROR and retry lines above say
    which trial failed and why."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not msg.startswith(("Trial task failed for trial", "Trials did not complete"))


class _OneLineStateErrors(logging.Filter):
    """Tune's 'Saving experiment state to storage ... failed' (e.g. the disk is full) as one line, the
    exception's own line in place of its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage().rstrip(': ')}: {type(exc).__name__}: {exc}", ()
            record.exc_info = record.exc_text = None
        return True


def quiet_trial_tracebacks() -> None:
    """Keep the terminal to one line per trial error (`lico-tune run --verbose` keeps Ray's tracebacks)."""
    for name, kind in (("ray.tune.execution.tune_controller", _NoTrialTracebacks), ("ray.tune.tune", _NoTrialTracebacks),
                       ("ray.tune.execution.experiment_state", _OneLineStateErrors)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


def _reason(trial) -> Optional[str]:
    """The exception line of the trial's latest failure (Tune appends each one to error.txt)."""
    path = trial.error_file
    if path and Path(path).is_file():
        return error_reason(Path(path).read_text(errors="replace").rsplit("Failure # ", 1)[-1])
    return None


def status_line(trials, n_trials: Optional[int], elapsed_s: float) -> str:
    counts = {"RUNNING": 0, "TERMINATED": 0, "ERROR": 0, "PENDING": 0, "PAUSED": 0}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    total = f" (of {n_trials})" if n_trials else ""
    pending = counts["PENDING"] + counts["PAUSED"]
    s = int(elapsed_s)
    return (f"{time.strftime('%H:%M:%S')} status   {counts['RUNNING']} running, {counts['TERMINATED']} finished, "
            f"{counts['ERROR']} errored, {pending} pending{total}; {s // 3600}:{s // 60 % 60:02d}:{s % 60:02d} elapsed")
