"""The paths a user names (storage roots, --out, -o, experiment directories): checked early, and
the operating system's refusals on them turned into one-paragraph errors.

- `check_path(text, what)`: refused at once: a NUL byte, a path over 4096 bytes or a name in it
  over 255 bytes, `~user` of no such user, a URI scheme lico-tune cannot store to (foo://).
- `check_reachable(root, what)`: a cloud root (s3://, gs://) answers, and its bucket exists, within a few seconds
  (CLOUD_TIMEOUT_S, or $LICO_TUNE_CLOUD_TIMEOUT_S), asked in a child process that is killed when
  it does not: pyarrow's clients wait for credentials or a network for minutes and cannot be
  interrupted from a thread.
- `environment_error(exc, paths)`: an OSError of the environment (permission denied, read-only
  filesystem, disk full, name too long, a symlink loop) on one of the user's paths, or on a folder
  above or inside one, as an `UnusablePath` naming the path, what happened and the fix; None for
  any other OSError (a bug keeps its traceback). `environment_errors(paths)` is the same as a
  context manager; the CLI wraps every command in it.
- `full_disk_errors(root, what)`: a run or resume that crashed, or whose trials errored, because
  the root's disk filled up (trial errors say ENOSPC, or under 1 MiB is left) as an UnusablePath.
Raises UnusablePath (a BadInput: the CLI exits 2). Imports nothing of lico_tune but errors.
"""
from __future__ import annotations

import contextlib
import errno
import os
import pwd
import re
import subprocess
import sys
from typing import Callable, Iterable, Iterator, Mapping, Optional

from ..errors import BadInput

PATH_MAX, NAME_MAX = 4096, 255                 # bytes, as Linux counts them
SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")    # what pyarrow.fs can store to
CLOUD = ("s3", "gs", "gcs", "abfs", "abfss")
CLOUD_TIMEOUT_S = 8.0
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class UnusablePath(BadInput):
    """A path the user named that this machine cannot use: permissions, a read-only or full disk, a
    name too long, an unknown scheme, a cloud root that does not answer."""


def shown(text: str, limit: int = 120) -> str:
    """The path as a message shows it: at most `limit` characters, NUL bytes visible."""
    text = str(text).replace("\x00", "\\x00")
    return text if len(text) <= limit else f"{text[:limit - 20]}...{text[-12:]} ({len(text)} characters)"


def check_path(text: str, what: str) -> None:
    """Refuse a path that no filesystem call could use; `what` names where it came from ('--storage')."""
    text = str(text)
    if "\x00" in text:
        raise UnusablePath(f"{what} '{shown(text)}' contains a NUL byte (\\x00), which no path can hold. "
                           f"Pass the path without it.")
    if len(text.encode("utf-8", "surrogateescape")) >= PATH_MAX:
        raise UnusablePath(f"{what} '{shown(text)}' is longer than the {PATH_MAX} bytes a path may have. "
                           f"Pass a shorter path.")
    m = _SCHEME.match(text)
    if m and m.group(1).lower() not in SCHEMES:
        raise UnusablePath(f"{what} '{shown(text)}': lico-tune cannot store to '{m.group(1)}://' URIs. Pass a "
                           f"local directory or a URI with one of the schemes {', '.join(s + '://' for s in SCHEMES)}.")
    local = text[len("file://"):] if text.lower().startswith("file://") else None if m else text
    if local is None:
        return
    if local.startswith("~") and not local.startswith("~/") and local != "~":
        user = local[1:].split("/", 1)[0]
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise UnusablePath(f"{what} '{shown(text)}': there is no user '{user}' on this machine, so "
                               f"~{user} cannot be expanded. Write the path in full, or ~/... for your own home.") from None
    long = next((part for part in local.split("/") if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX), None)
    if long is not None:
        raise UnusablePath(f"{what} '{shown(text)}': the name '{shown(long, 60)}' in it is {len(long.encode())} bytes "
                           f"long; a file or directory name may have at most {NAME_MAX}. Pass a shorter path.")


CLOUD_TIMEOUT_MAX_S = 3600.0       # an hour: beyond it a wait is a hang (and 1e9 s overflows the OS's timers)


def cloud_timeout_s() -> float:
    """$LICO_TUNE_CLOUD_TIMEOUT_S (seconds, above 0 and at most CLOUD_TIMEOUT_MAX_S), else CLOUD_TIMEOUT_S."""
    text = os.environ.get("LICO_TUNE_CLOUD_TIMEOUT_S")
    if text is None or not text.strip():
        return CLOUD_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= CLOUD_TIMEOUT_MAX_S:      # also NaN and inf
        raise UnusablePath(f"$LICO_TUNE_CLOUD_TIMEOUT_S={shown(text, 40)} is not a wait lico-tune can use: give the "
                           f"seconds a cloud root may take to answer, above 0 and at most {CLOUD_TIMEOUT_MAX_S:g} "
                           f"(e.g. LICO_TUNE_CLOUD_TIMEOUT_S=30), or unset it for the default {CLOUD_TIMEOUT_S:g}.")
    return value


_PROBE = """
import sys
import pyarrow.fs
fs, path = pyarrow.fs.FileSystem.from_uri(sys.argv[1])
fs.get_file_info(path)
bucket = path.split("/", 1)[0]
if bucket and fs.get_file_info(bucket).type == pyarrow.fs.FileType.NotFound:
    sys.exit(3)       # the endpoint answers, but has no such bucket (writes would fail after Ray starts)
"""

_CREDENTIALS = {"s3": "AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials)",
                "gs": "Google credentials (GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`)",
                "abfs": "Azure credentials (AZURE_STORAGE_ACCOUNT_NAME and a key or token)"}


def _endpoint(scheme: str) -> str:
    """' (its endpoint URL, from $VAR, ...)' when the environment sets an S3 endpoint (the
    service-specific variable first, as the AWS SDKs read them), else ''."""
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL") if scheme == "s3" else ():
        if os.environ.get(var):
            return f" (its endpoint {shown(os.environ[var])}, from ${var}, is unreachable or silent)"
    return ""


_AWS_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def _no_credentials(scheme: str) -> str:
    """'; no AWS credentials were found ...' when none of the AWS SDK's usual sources is set for s3://
    (not a refusal by itself: an EC2 instance role has none of them), else ''."""
    if scheme != "s3" or any(os.environ.get(v) for v in _AWS_CREDENTIAL_VARS):
        return ""
    files = [os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
             os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")]
    if any(os.path.isfile(os.path.expanduser(f)) for f in files):
        return ""
    return ("; no AWS credentials were found here (none of $AWS_ACCESS_KEY_ID, $AWS_PROFILE, "
            "$AWS_WEB_IDENTITY_TOKEN_FILE, ~/.aws/credentials), so the request was unsigned or waited for an instance role")


def check_reachable(root: str, what: str) -> None:
    """A cloud root must answer (exist or not) within cloud_timeout_s(), and its bucket must exist;
    local roots pass."""
    check_path(root, what)
    m = _SCHEME.match(str(root))
    scheme = m.group(1).lower() if m else ""
    if scheme not in CLOUD:
        return
    timeout = cloud_timeout_s()
    creds = _CREDENTIALS[{"gcs": "gs", "abfss": "abfs"}.get(scheme, scheme)]
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE, str(root)], capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:      # run() has killed it
        raise UnusablePath(f"{what} '{shown(root)}' did not answer within {timeout:g} s{_endpoint(scheme)}"
                           f"{_no_credentials(scheme)}: this machine has no "
                           f"network to it or no {creds}. Check both (e.g. list it with your cloud's command "
                           f"line tool), or pass a local directory. ($LICO_TUNE_CLOUD_TIMEOUT_S sets the wait.)") from None
    if out.returncode == 3:
        bucket = str(root).split("://", 1)[1].split("/", 1)[0]
        raise UnusablePath(f"{what} '{shown(root)}': the bucket '{shown(bucket, 63)}' does not exist (its endpoint "
                           f"answered{_no_credentials(scheme)}). Create the bucket (e.g. `aws s3 mb "
                           f"{scheme}://{shown(bucket, 63)}`), or fix its name.")
    if out.returncode != 0:
        lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
        why = lines[-1][:300] if lines else f"exit status {out.returncode}"
        raise UnusablePath(f"{what} '{shown(root)}' cannot be reached ({why}){_no_credentials(scheme)}. Check the network and the "
                           f"{creds}, or pass a local directory.")


# ----------------------------------------------------------------------------- OS errors

ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG,
                      errno.ELOOP}


def disk_full(path: str) -> bool:
    """The filesystem holding path (or its nearest existing folder above) has under 1 MiB free."""
    p = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(p) and p != os.path.dirname(p):
        p = os.path.dirname(p)
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 2 ** 20


def _related(filename: str, path: str) -> bool:
    """filename is path, lies inside it, or is a folder above it."""
    a = os.path.abspath(os.path.expanduser(filename))
    b = os.path.abspath(os.path.expanduser(path))
    return a == b or a.startswith(b.rstrip("/") + "/") or (b.startswith(a.rstrip("/") + "/") and a != "/")


def _culprit(exc: OSError, paths: Mapping[str, str]) -> Optional[tuple[str, str, str]]:
    """(the user's path, how it was given, the file the error names) of the error, or None."""
    local = {p: w for p, w in paths.items() if p and not _SCHEME.match(str(p))}
    for name in (exc.filename, exc.filename2):
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        if isinstance(name, str) and name:
            for p, w in local.items():
                if _related(name, p):
                    return p, w, name
    if exc.filename is None and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        for p, w in local.items():
            if disk_full(p):
                return p, w, p
    return None


def _why(exc: OSError) -> tuple[str, str]:
    """(what happened, the fix) for an environment errno."""
    e = exc.errno
    if e in (errno.EACCES, errno.EPERM):
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = f"uid {os.geteuid()}"
        return (f"permission denied (the user {user} may not read or write there)",
                "Pass a path you can write to (e.g. under your home), or get access to it (chmod/chown)")
    if e == errno.EROFS:
        return ("it lies on a read-only filesystem",
                "Copy it to a writable place and use that copy, or mount the filesystem read-write")
    if e in (errno.ENOSPC, errno.EDQUOT):
        return ("the disk is full" if e == errno.ENOSPC else "the disk quota is used up",
                "Free some space there, or pass a location on another disk")
    if e == errno.ENAMETOOLONG:
        return (f"a name in it is longer than {NAME_MAX} bytes or the whole path longer than {PATH_MAX}",
                "Use a shorter path or name")
    return ("symbolic links there point in a loop", "Fix or remove the links")


def environment_error(exc: OSError, paths: Mapping[str, str]) -> Optional[UnusablePath]:
    """`exc` as an UnusablePath when it is the environment refusing one of `paths` (path -> how the user
    gave it, e.g. {'/data/res': '--storage'}); None otherwise."""
    if not isinstance(exc, OSError) or exc.errno not in ENVIRONMENT_ERRNOS:
        return None
    found = _culprit(exc, paths)
    if found is None:
        return None
    path, what, name = found
    happened, fix = _why(exc)
    at = "" if os.path.abspath(os.path.expanduser(name)) == os.path.abspath(os.path.expanduser(path)) else \
        f" ({exc.strerror}: {shown(name)})"
    return UnusablePath(f"{what} {shown(path)}: cannot be used, {happened}{at}. {fix}.")


def full_disk_error(root: str, what: str, reasons: Iterable[Optional[str]] = ()) -> Optional[UnusablePath]:
    """After a run that failed or whose trials errored: an UnusablePath when the local root's disk
    filled up (a trial's error says so, or under 1 MiB is left); None otherwise."""
    if _SCHEME.match(str(root)):
        return None
    said = any(r and ("No space left on device" in r or "[Errno 28]" in r) for r in reasons)
    if not (said or disk_full(root)):
        return None
    return UnusablePath(f"{what} {shown(root)}: the disk filled up during the run (No space left on device), so "
                        f"its trials could not save their results and this experiment is incomplete; the other "
                        f"experiments there were not changed. Free some space there (or pass a --storage on "
                        f"another disk) and run the spec again.")


@contextlib.contextmanager
def full_disk_errors(root: str, what: str) -> Iterator[Callable]:
    """`with full_disk_errors(root, what) as seen: summary = seen(run(...))`: a run that crashed, or
    whose trials errored or were left unfinished, on a disk that filled up raises UnusablePath (a bug
    on a roomy disk does not)."""
    def seen(summary):
        # errored, or left unfinished (a trial whose last save hit the full disk stays 'running' in storage)
        if getattr(summary, "n_errors", 0) or getattr(summary, "n_unfinished", 0):
            bad = full_disk_error(root, what, [row.get("error") for row in getattr(summary, "rows", [])])
            if bad is not None:
                raise bad
        return summary
    with _translated(Exception, lambda _exc: full_disk_error(root, what)):
        yield seen


@contextlib.contextmanager
def environment_errors(paths: Mapping[str, str]) -> Iterator[None]:
    """Re-raise an environment OSError on one of `paths` as UnusablePath; other errors pass unchanged."""
    with _translated(OSError, lambda exc: environment_error(exc, paths)):
        yield


@contextlib.contextmanager
def _translated(kinds, convert: Callable[[BaseException], Optional[BadInput]]) -> Iterator[None]:
    """An exception of `kinds` re-raised as convert(exc) when that is not None (a BadInput passes as it is)."""
    try:
        yield
    except BadInput:
        raise
    except kinds as exc:
        bad = convert(exc)
        if bad is None:
            raise
        raise bad from exc
