"""What every lico-tune subcommand shares: exit codes and how it talks to the user."""
from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def say(msg: str) -> None:
    print(msg, flush=True)


def error(msg: str) -> None:
    print("error: " + msg, file=sys.stderr, flush=True)
