"""What every lico-tune subcommand shares: exit codes, how it talks to the user, and what it says
when it is interrupted (Ctrl-C) or its output is closed (`lico-tune report ROOT | head -1`)."""
from __future__ import annotations

import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141          # 128 + SIGINT, 128 + SIGPIPE, as a shell reports them

# What each command leaves when Ctrl-C stops it, and how to go on.
_INTERRUPTED = {
    "train": "the last finished epoch's checkpoint is kept (resume with `lico-tune train SPEC --resume`)",
    "run": "an experiment that had started keeps its finished trials and saved state (continue it with "
           "`lico-tune resume <storage>/<experiment>`, as the run printed); one that had not, left nothing to resume",
    "resume": "the experiment keeps its finished trials and saved state; continue with `lico-tune resume` again",
    "trust": "its signed manifest is replaced only whole, so the experiment keeps the signature it had; sign it "
             "with `lico-tune trust DIR` again",
    "index": "the catalog keeps the experiments indexed so far (the files are unchanged); run `lico-tune index` "
             "again to finish it",
    "report": "nothing was changed but the catalog cache; run it again",
    "rerun": "nothing of the trial's record was changed; run `lico-tune rerun` again",
    "explain": "no figure was written; run it again",
}


def say(msg: str) -> None:
    print(msg, flush=True)


def error(msg: str) -> None:
    print("error: " + msg, file=sys.stderr, flush=True)


def interrupted(command: str) -> str:
    """The one line `lico-tune COMMAND` prints when Ctrl-C (or a second one) stops it."""
    return f"lico-tune {command} interrupted: {_INTERRUPTED.get(command, 'nothing was changed; run it again')}"


def output_closed() -> int:
    """Standard output's reader went away (`| head -1`): stop quietly. Pointing it at /dev/null keeps
    Python from printing a BrokenPipeError when it flushes at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_BROKEN_PIPE
