"""Checks of the command line's arguments that argparse's types cannot make alone: counts and
ports in range, a --host of this machine, an output file that can be written, and the paths each
command names (for `userpaths.environment_errors`, which the CLI wraps every command in).
Each raises UnusablePath or BadInput (exit 2) or, as an argparse type, ArgumentTypeError."""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
import threading
from pathlib import Path

from ..errors import BadInput
from ..userpaths import UnusablePath, check_path, shown

# The arguments that name paths, by their dest, and how the message names them.
PATH_ARGS = {"spec": "SPEC", "specs": "SPEC", "out": "--out", "output": "-o/--output",
             "experiment_dir": "EXPERIMENT_DIR", "trial_dir": "TRIAL_DIR", "checkpoint": "CHECKPOINT",
             "images": "IMAGES", "storage": "STORAGE"}


def user_paths(args: argparse.Namespace) -> dict[str, str]:
    """path -> how the user gave it, for every path argument of the command (run's --storage included)."""
    out: dict[str, str] = {}
    for dest, label in PATH_ARGS.items():
        value = getattr(args, dest, None)
        label = "--storage" if dest == "storage" and args.command == "run" else label
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v:
                out[v] = label
    return out


def check_paths(args: argparse.Namespace) -> None:
    """Every path argument is one a filesystem call can take (no NUL byte, not too long, no ~nosuchuser)."""
    for dest, label in PATH_ARGS.items():
        value = getattr(args, dest, None)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                check_path(v, "--storage" if dest == "storage" and args.command == "run" else label)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number; pass e.g. -n 6") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: pass a count of at least 1 (the number of fixed test images "
                                         f"to explain, e.g. -n 6)")
    return n


def port(text: str) -> int:
    """argparse type: a TCP port, 1..65535."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number; pass e.g. --port 8501") from None
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{n} is not a TCP port (1 to 65535); pass e.g. --port 8501")
    return n


def _addresses(host: str, timeout_s: float = 3.0) -> list[str]:
    """The IP addresses of host (resolved in a thread: a name lookup without a network must not hang)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    found: list[str] = []

    def look() -> None:
        try:
            found.extend(sorted({str(a[4][0]) for a in socket.getaddrinfo(host, None)}))
        except (OSError, UnicodeError):
            pass
    t = threading.Thread(target=look, daemon=True)
    t.start()
    t.join(timeout_s)
    return list(found)


def _bindable(address: str) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


def check_host(host: str) -> None:
    """--host must be an address of this machine (127.0.0.1, localhost, ::1, 0.0.0.0 or an interface's)."""
    addresses = _addresses(host)
    if not addresses or not any(_bindable(a) for a in addresses):
        what = "cannot be resolved" if not addresses else f"({', '.join(addresses)}) is not an address of this machine"
        raise BadInput(f"--host {shown(host, 80)} {what}: the dashboard can only listen on this machine's own "
                       f"addresses. Pass --host 127.0.0.1 (this machine only), --host 0.0.0.0 (every interface) "
                       f"or one of its interface addresses.")


def check_output_file(path: str, what: str, example: str) -> None:
    """A file to write: not a directory, in an existing folder this user can write to, and, when it
    exists, writable itself."""
    check_path(path, what)
    p = Path(path).expanduser()
    if p.is_dir():
        raise UnusablePath(f"{what} {shown(path)} is a directory; pass a file path, e.g. "
                           f"{shown(str(p / example), 80)}.")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UnusablePath(f"{what} {shown(path)}: the folder {shown(str(parent))} does not exist. Create it first "
                           f"(mkdir -p {shown(str(parent), 80)}) or pass a path in an existing folder.")
    if p.exists() and not os.access(p, os.W_OK):
        raise UnusablePath(f"{what} {shown(path)} exists and cannot be written (read-only). Pass another path, or "
                           f"make it writable.")
    if not p.exists() and not os.access(parent, os.W_OK | os.X_OK):
        where = os.path.abspath(parent)
        ro = _read_only(where)
        raise UnusablePath(f"{what} {shown(path)}: the folder {shown(where)} cannot be written "
                           f"({'a read-only filesystem' if ro else 'permission denied'}). Pass a path in a folder "
                           f"you can write to.")


def _read_only(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def refuse_unknown_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """An option the command does not take is named (with a 'did you mean'), even where argparse
    would first complain about a missing argument ('lico-tune run --bogus'). Exits 2 via argparse."""
    from ..errors import suggest
    subs = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
    command = next((t for t in argv if not t.startswith("-")), None)
    if command not in subs:
        return
    sub = subs[command]
    known = sub._option_string_actions
    takes_value = False
    for tok in argv[argv.index(command) + 1:]:
        if tok == "--":
            return
        if takes_value or not tok.startswith("-") or tok == "-" or re.fullmatch(r"-\d[\d.e+-]*", tok):
            takes_value = False
            continue
        name = tok.split("=", 1)[0]
        matches = [o for o in known if o == name] or [o for o in known if o.startswith(name) and name.startswith("--")]
        if not matches:
            sub.error(f"unrecognized option {name}{suggest(name, list(known))} (`lico-tune {command} -h` lists "
                      f"its options)")
        action = known[matches[0]]
        takes_value = "=" not in tok and action.nargs != 0 and not isinstance(
            action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                     argparse._VersionAction, argparse._CountAction))
