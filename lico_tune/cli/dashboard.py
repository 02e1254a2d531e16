"""Run a child process (the Streamlit server of `lico-tune dashboard`) so that stopping the parent
stops the child: SIGTERM and SIGINT are passed on and waited for."""
from __future__ import annotations

import signal
import subprocess


def run_forwarding_signals(cmd: list[str], grace_s: float = 5.0) -> int:
    """Run the server; SIGTERM/SIGINT are passed on to it and waited for (then SIGKILL after
    `grace_s`), so that stopping `lico-tune dashboard` never leaves a Streamlit server behind."""
    child = subprocess.Popen(cmd)
    got: list[int] = []

    def forward(signum, _frame):
        got.append(signum)
        if child.poll() is None:
            child.send_signal(signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                rc = child.wait(timeout=grace_s if got else None)
                break
            except subprocess.TimeoutExpired:       # the server ignored the signal
                child.kill()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if child.poll() is None:
            child.kill()
            child.wait()
    if got:
        return 128 + got[0]
    return rc if rc >= 0 else 128 - rc
