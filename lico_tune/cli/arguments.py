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
from ..storage.userpaths import UnusablePath, check_path, shown

# The arguments that name paths, by their dest, and how the message names them.
PATH_ARGS = {"spec": "SPEC", "specs": "SPEC", "out": "--out", "output": "-o/--output",
             "experiment_dir": "EXPERIMENT_DIR", "trial_dir": "TRIAL_DIR", "checkpoint": "CHECKPOINT",
             "images": "IMAGES", "storage": "STORAGE"}


def _argument_paths(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for dest, label in PATH_ARGS.items():
        value = getattr(args, dest, None)
        label = "--storage" if dest == "storage" and args.command == "run" else label
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v:
                out[v] = label
    return out


KEYED_COMMANDS = ("run", "resume", "trust")       # the commands that sign or verify with the user's key


def user_paths(args: argparse.Namespace) -> dict[str, str]:
    """path -> how the user gave it, for every path argument of the command (run's --storage included),
    and the signing key of the commands that use it (a read-only HOME: said of the key, not a traceback)."""
    out = _argument_paths(args)
    if args.command in KEYED_COMMANDS:
        from ..layout import KEY_ENV
        from ..trust import key_file
        out.setdefault(str(key_file()), f"the signing key (${KEY_ENV}, default ~/.config/lico-tune/manifest.key)")
    return out


def check_signing_key(args: argparse.Namespace) -> None:
    """run, resume and trust read the user's signing key (made on first use) before anything else, so
    that a read-only HOME or an odd key file (a FIFO, not UTF-8, unreadable) is one paragraph at once,
    not a traceback once Ray has started."""
    if args.command in KEYED_COMMANDS:
        from ..trust import load_key
        load_key()


def check_catalog_url(args: argparse.Namespace) -> None:
    """--db, when given, is a URL SQLAlchemy can open whose SQLite file is absent or a regular file."""
    if getattr(args, "db", None):
        from ..results.catalog import check_url
        check_url(args.db)


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


# Filesystems of the kernel's, where a path names no file one can write (/proc/version: EIO).
PSEUDO_FILESYSTEMS = frozenset({"proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs",
                                "cgroup", "cgroup2", "pstore", "bpf", "configfs", "efivarfs", "mqueue",
                                "hugetlbfs", "fusectl", "binfmt_misc", "autofs"})


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding path (its longest mount point in /proc/self/mounts); '' if unknown."""
    real, best, fstype = os.path.realpath(path), "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, fstype = mount, parts[2]
    except OSError:
        return ""
    return fstype


def check_output_file(path: str, what: str, example: str) -> None:
    """A file to write: not a directory nor a special file, not on the kernel's pseudo filesystems
    (/proc, /sys, /dev), in an existing folder this user can write to, and, when it exists,
    writable itself."""
    check_path(path, what)
    p = Path(path).expanduser()
    if p.is_dir():
        raise UnusablePath(f"{what} {shown(path)} is a directory; pass a file path, e.g. "
                           f"{shown(str(p / example), 80)}.")
    if os.path.lexists(p) and not p.is_file():
        from ..storage.safe_files import kind
        raise UnusablePath(f"{what} {shown(path)} is {kind(os.stat(p).st_mode) if p.exists() else 'a broken link'}, "
                           f"not a file lico-tune can replace; pass a file path, e.g. {example}.")
    fstype = filesystem_type(str(p.parent if str(p.parent) else "."))
    if fstype in PSEUDO_FILESYSTEMS:
        raise UnusablePath(f"{what} {shown(path)} lies on the kernel's {fstype} filesystem, which holds no files one "
                           f"can write. Pass a path in one of your folders, e.g. {example}.")
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
    top = parser._option_string_actions
    for tok in argv[:argv.index(command)] if command in argv else argv:     # options before the command
        name = tok.split("=", 1)[0]
        if name.startswith("-") and name not in top:
            parser.error(f"unrecognized option {name}{suggest(name, list(top))}: lico-tune itself takes only "
                         f"{', '.join(sorted(top))}; a command's options follow the command (`lico-tune COMMAND "
                         f"-h` lists them; commands: {', '.join(subs)})")
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
