"""Ctrl-C (SIGINT) and SIGTERM during `run` / `resume`: stop Tune gracefully, then say so.

Ray Tune's own SIGINT handler stops the run and saves its state, but the caller cannot tell that
it happened (fit() returns as if the experiment ended: exit 0, 'finished'). Here both signals are
caught by us and turned into Tune's graceful stop (SIGUSR1, which Tune always listens to); the
signal is remembered so that the summary says "interrupted", summary.json has finished: false
and the command exits 128 + signal (130 / 143). A second signal stops at once (KeyboardInterrupt).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator, Optional

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class StopSignals:
    def __init__(self) -> None:
        self.received: Optional[str] = None


@contextlib.contextmanager
def graceful_stop() -> Iterator[StopSignals]:
    state = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, _frame):
        if state.received is not None:             # the second signal: stop now
            raise KeyboardInterrupt
        state.received = signal.Signals(signum).name
        print(f"\n{state.received} received: stopping the trials and saving the experiment's state "
              f"(send it again to stop at once)", flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)       # Tune's graceful stop

    old_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"   # keep Tune from replacing our SIGINT handler
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if old_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = old_env
