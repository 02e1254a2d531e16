"""The local file layer under lico_tune/storage: every file lico-tune reads or writes in an experiment, a
results root, the catalog's directory and the signing key goes through here.

- Regular files only. A file is opened with O_NONBLOCK (a FIFO opens at once instead of waiting for
  a writer) and O_NOFOLLOW, then fstat'ed: a FIFO, device (/dev/zero), socket or directory is refused
  before one byte is read, so no reader hangs or fills the memory.
- No symlink followed out of `within` (the experiment or results root the caller opened): the
  file's resolved path must lie inside it. A link inside it to a file inside it is followed.
- A size cap on every read (MAX_READ_BYTES; checkpoints are not read here: torch loads them).
- Atomic replace for every write: a temporary file in the same folder, fsync, rename over the
  name. A reader never sees half a file, a full disk leaves the previous file whole, and a symlink
  at the name is replaced, never written through.
- One error, UnsafeFile (a BadInput: exit 2), naming the file, what it is and the fix.
Imports nothing of lico_tune but errors.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from typing import Optional

from ..errors import BadInput

MAX_READ_BYTES = 64 * 2 ** 20     # lico-tune's and Ray's JSON/YAML/pickles are kilobytes to a few MB
MAX_KEY_BYTES = 4096
_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


class UnsafeFile(BadInput):
    """A file lico-tune will not read or write: not a regular file, a link out of the experiment, too large."""


def kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_regular(path: str, mode: int) -> UnsafeFile:
    return UnsafeFile(f"{path} is {kind(mode)}, not a regular file: lico-tune reads and writes only regular files "
                      f"(a pipe or a device would hang it or fill its memory). Remove it, or put the real file "
                      f"back (restore it from a copy).")


def _inside(path: str, within: str) -> bool:
    within = os.path.realpath(within)
    return path == within or path.startswith(within.rstrip("/") + "/")


def _check_within(path: str, within: Optional[str]) -> str:
    """The path to open: itself when nothing in it leads out of `within`; refused otherwise."""
    if within is None:
        return path
    real = os.path.realpath(path)
    if not _inside(real, within):
        try:
            mode = os.stat(real).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise UnsafeFile(f"{path} is a symbolic link to {real}, {kind(mode)} outside {within}: lico-tune reads "
                             f"only regular files of the experiment (a device or pipe would hang it or fill its "
                             f"memory). Remove the link, or put the real file back (restore it from a copy).")
        raise UnsafeFile(f"{path} leads through a symbolic link to {real}, outside {within}: lico-tune does not "
                         f"follow links out of an experiment or results root (a write would change the file "
                         f"it points to). Replace the link with a copy of the file (cp --remove-destination "
                         f"{real} {path}), or remove it.")
    return real


def open_regular(path: str, flags: int = os.O_RDONLY, within: Optional[str] = None, mode: int = 0o644) -> int:
    """An fd of the regular file at path (O_CLOEXEC, O_NONBLOCK cleared); raises UnsafeFile for a
    special file or a link out of `within`, OSError (FileNotFoundError...) as os.open does."""
    target = _check_within(os.path.abspath(path), within)
    nofollow = os.O_NOFOLLOW if within is not None else 0   # resolved above: a link swapped in since is refused
    try:
        fd = os.open(target, flags | nofollow | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and within is not None:
            raise UnsafeFile(f"{path} was replaced by a symbolic link while lico-tune opened it; it refuses to "
                             f"follow it. Check who else writes this directory.") from None
        if exc.errno == errno.ENXIO:           # a socket, or a FIFO opened for writing with no reader
            try:
                mode = os.lstat(target).st_mode
            except OSError:
                mode = stat.S_IFIFO
            raise not_regular(path, mode) from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):           # harmless, and what callers already handle as 'not a file'
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(path, st.st_mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def too_large(path: str, size: int, limit: int) -> UnsafeFile:
    return UnsafeFile(f"{path} is {size} bytes, over the {limit} bytes lico-tune reads from one file: it is not a "
                      f"file that lico-tune or Ray wrote. Remove it, or restore it from a copy.")


def read_bytes(path: str, within: Optional[str] = None, limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (UnsafeFile otherwise; OSError as open)."""
    fd = open_regular(path, within=within)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise too_large(path, size, limit)
        chunks, total = [], 0
        while True:                            # the file may grow while it is read: never past limit
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large(path, total, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def parse_json(text: str | bytes):
    """json.loads, with a document nested too deeply for Python's parser (RecursionError) reported as
    the ValueError every caller already handles as 'damaged'."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to be a file lico-tune or Ray wrote") from None


def _umask() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def write_atomic(path: str, data: bytes, within: Optional[str] = None, mode: Optional[int] = None) -> None:
    """Replace the file at path with data: a temporary file beside it, fsync, rename. A symlink at
    path is replaced (its target is never written); a folder above leading out of `within` is
    refused. On any error (a full disk) the previous file is left as it was."""
    path = os.path.abspath(path)
    parent = _check_within(os.path.dirname(path), within)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, os.path.join(parent, os.path.basename(path)))
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                       # the rename itself survives a power cut
        dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read_key_text(path: str, what: str, fix: str) -> str:
    """A small text file the user keeps outside every experiment (the signing key): links are
    followed, but it must be a regular UTF-8 file of at most MAX_KEY_BYTES. `what` names it in the
    error ('the signing key'), `fix` says what to do."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFREG                    # missing or unreadable: read_bytes raises the OSError
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise UnsafeFile(f"{what} {path} is {kind(mode)}, not a regular file (reading a pipe or a device would hang "
                         f"or never end). {fix}")
    try:
        data = read_bytes(path, limit=MAX_KEY_BYTES)
    except UnsafeFile as exc:                  # too large, or swapped for a special file since the stat
        raise UnsafeFile(f"{what}: {exc} {fix}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeFile(f"{what} {path} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}): it is not "
                         f"a file lico-tune made. {fix}") from None


def check_regular_or_missing(path: str, what: str, within: Optional[str] = None) -> None:
    """A path lico-tune will create or open by name through another library (sqlite): absent, or a
    regular file that is not a symlink out of `within` (a symlink at all, when within is None)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        if within is None or not _inside(real, within):
            raise UnsafeFile(f"{what} {path} is a symbolic link to {real}: lico-tune does not open a database through "
                             f"a link (it would add its tables to whatever file it points to). Remove the link "
                             f"(a new catalog is built from the files), or pass the real file's URL with --db.")
        st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{what} {path} is {kind(st.st_mode)}, not a database file. Remove it, or pass "
                         f"another --db (e.g. sqlite:///some/dir/catalog.db).")
