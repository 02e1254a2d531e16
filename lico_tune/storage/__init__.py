"""The one storage layer of lico-tune: a local directory or a cloud URI (s3://, gs://, file://...),
used by the search side (writing lico_run.yaml and summary.json, reading them on resume) and the
results side (scanning experiments).

Local paths go through os (fast: a thousand trials are a few thousand stat calls) and safe_files
(regular files only, no symlink out of the root, a size cap, atomic replace: see there); URIs
through pyarrow.fs, which Ray Tune itself uses for cloud storage. Nothing here imports ray.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import safe_files
from .safe_files import MAX_READ_BYTES

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_uri(path: str) -> bool:
    return bool(_URI.match(str(path)))


def normalise_root(root: str | os.PathLike) -> str:
    """An absolute local path (with ~ expanded) or the URI as given (without a trailing slash)."""
    root = str(root)
    if is_uri(root):
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def join(*parts: str) -> str:
    head, *rest = parts
    if is_uri(head):
        return "/".join([head.rstrip("/"), *(p.strip("/") for p in rest)])
    return str(Path(head, *rest))


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    mtime: float      # seconds since the epoch (0 when the filesystem does not say)
    size: int


class Storage:
    """A root and the filesystem it lies on; every path passed in is absolute (local) or a URI."""

    def __init__(self, root: str):
        self.root = normalise_root(root)
        self._fs = None
        if is_uri(self.root):
            import pyarrow.fs
            self._fs, _ = pyarrow.fs.FileSystem.from_uri(self.root)

    @property
    def is_local(self) -> bool:
        return self._fs is None

    def _fs_path(self, path: str) -> str:
        import pyarrow.fs
        return pyarrow.fs.FileSystem.from_uri(path)[1]

    def exists(self) -> bool:
        return self.is_dir(self.root)

    def is_dir(self, path: str) -> bool:
        if self.is_local:
            return os.path.isdir(path)
        import pyarrow.fs
        return self._fs.get_file_info(self._fs_path(path)).type == pyarrow.fs.FileType.Directory

    def list(self, path: str) -> list[Entry]:
        """The entries directly under path, sorted by name; [] when path is missing."""
        if self.is_local:
            try:
                with os.scandir(path) as it:
                    out = []
                    for e in it:
                        try:
                            st = e.stat()
                        except OSError:      # removed while we looked
                            continue
                        out.append(Entry(e.name, e.is_dir(), st.st_mtime, st.st_size))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                return []
            return sorted(out, key=lambda e: e.name)
        import pyarrow.fs
        try:
            infos = self._fs.get_file_info(pyarrow.fs.FileSelector(self._fs_path(path), recursive=False))
        except (FileNotFoundError, OSError):
            return []
        out = [Entry(i.base_name, i.type == pyarrow.fs.FileType.Directory,
                     i.mtime.timestamp() if i.mtime else 0.0, i.size or 0) for i in infos]
        return sorted(out, key=lambda e: e.name)

    def read_bytes(self, path: str, limit: int = MAX_READ_BYTES) -> Optional[bytes]:
        """The file's bytes, or None when it is missing or unreadable; safe_files.UnsafeFile (naming
        it) when it is a FIFO, a device, a socket, a symlink out of the root, or over `limit` bytes."""
        if self.is_local:
            try:
                return safe_files.read_bytes(path, within=self.root, limit=limit)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
                return None
        try:
            with self._fs.open_input_stream(self._fs_path(path)) as f:
                data = f.read(limit + 1)
        except (FileNotFoundError, OSError):
            return None
        if len(data) > limit:
            raise safe_files.too_large(path, len(data), limit)
        return data

    def read_text(self, path: str) -> Optional[str]:
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def write_text(self, path: str, text: str) -> None:
        """Write a file (creating its parent directories); raises OSError when it cannot. Locally an
        atomic replace (safe_files.write_atomic): a full disk leaves the previous file whole."""
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            safe_files.write_atomic(path, text.encode(), within=self.root)
            return
        fs_path = self._fs_path(path)
        self._fs.create_dir(fs_path.rsplit("/", 1)[0], recursive=True)
        with self._fs.open_output_stream(fs_path) as f:
            f.write(text.encode())

    def remove(self, path: str) -> None:
        """Remove one file; a missing one is not an error."""
        if self.is_local:
            Path(path).unlink(missing_ok=True)
            return
        try:
            self._fs.delete_file(self._fs_path(path))
        except FileNotFoundError:
            pass


def write_text(path: str, text: str) -> None:
    """Write one file at a local path or URI."""
    parent = path.rstrip("/").rsplit("/", 1)[0] if is_uri(path) else str(Path(path).parent)
    Storage(parent).write_text(path, text)


def read_text(path: str) -> Optional[str]:
    """One file at a local path or URI; None when it is missing or unreadable."""
    parent = path.rstrip("/").rsplit("/", 1)[0] if is_uri(path) else str(Path(path).parent)
    return Storage(parent).read_text(path)
