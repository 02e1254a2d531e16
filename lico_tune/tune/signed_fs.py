"""Ray writes and reads an experiment's signed files through lico-tune: a pyarrow filesystem that
signs what Ray writes before it reaches storage, and serves Ray the bytes lico-tune verified.

Ray Tune's state (tuner.pkl, experiment_state-*.json, the searcher's and callbacks' states, a
trial's error.pkl: the files lico_tune/trust signs, its *signed names*) goes from the driver to storage
through the RunConfig's `storage_filesystem`, and on `resume` comes back through it. `run` and
`resume` hand Ray this one (`signed_filesystem`), which passes every call through to the real
filesystem except:

* Writing a signed name: the bytes are held until the stream closes; then the manifest is written
  first, accepting both the digest the name has in storage now and the new one, and only then the
  file. A driver killed at any point (mid-save, mid-upload, between the two writes) leaves each
  file either as it was or as written, and the manifest in storage accepts both: `resume` needs no
  `lico-tune trust` after a crash. Only digests of bytes this driver verified or wrote are ever
  accepted, so a file anyone else put there is still refused. `seal` (when the driver ends) drops
  the old digests.
* Reading a signed name gives the bytes `resume` verified (trust.verified_bytes) or this driver
  wrote since, never storage's: a file swapped after the check is not read (Ray reads tuner.pkl,
  the states and error.pkl seconds after the check). A signed name that is neither is absent (not
  listed, not found).
* lico-tune's own data files (trust.DATA_ONLY: the manifest, the driver record, the summary, the
  lock) are never written by Ray: the copies that Ray's resume downloads into its staging folder
  and uploads again with each save are dropped, so they cannot put back an old manifest or record.

Trial workers get the plain filesystem (`__reduce__`): they write results and checkpoints only, and
a checkpoint is loaded with weights_only and its own checksum (train/checkpoint.py).
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.fs as pafs

from ..layout import MANIFEST_FILE, RAY_ERROR_PICKLE
from ..trust import DATA_ONLY, PICKLE_SUFFIXES, manifest_text


class _PlainHandler(pafs.FileSystemHandler):
    """Every call passed through to `inner` (a pyarrow FileSystem)."""

    def __init__(self, inner: pafs.FileSystem):
        self.inner = inner

    def __eq__(self, other):
        return isinstance(other, _PlainHandler) and self.inner.equals(other.inner)

    def __ne__(self, other):
        return not self == other

    def get_type_name(self):
        return self.inner.type_name

    def normalize_path(self, path):
        return self.inner.normalize_path(path)

    def get_file_info(self, paths):
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.inner.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        self.inner.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path):
        self.inner.delete_file(path)

    def move(self, src, dest):
        self.inner.move(src, dest)

    def copy_file(self, src, dest):
        self.inner.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.inner.open_input_stream(path)

    def open_input_file(self, path):
        return self.inner.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.inner.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.inner.open_append_stream(path, metadata=metadata)


def plain_filesystem(inner: pafs.FileSystem) -> pafs.PyFileSystem:
    return pafs.PyFileSystem(_PlainHandler(inner))


class _Held(io.RawIOBase):
    """An output stream whose bytes are handed to `commit` when it closes (nothing is written before)."""

    def __init__(self, commit):
        self._commit, self._buf = commit, bytearray()

    def writable(self):
        return True

    def write(self, b):
        self._buf += b
        return len(b)

    def close(self):
        if not self.closed:
            self._commit(bytes(self._buf))
        super().close()


class _SignedHandler(_PlainHandler):
    def __init__(self, inner: pafs.FileSystem, experiment_uri: str, experiment_fs_path: str,
                 verified: dict[str, bytes], signed: dict[str, str]):
        super().__init__(inner)
        self.uri, self.root = experiment_uri, experiment_fs_path.rstrip("/")
        self.known = dict(verified)          # signed name -> the bytes Ray may read
        self.current = dict(signed)          # signed name -> SHA-256 of what storage holds (as far as we know)
        self.accepted = {k: [v] for k, v in signed.items()}   # what the manifest in storage accepts
        self._lock = threading.RLock()

    def __reduce__(self):                    # to a trial's worker: the plain filesystem
        return _PlainHandler, (self.inner,)

    def _name(self, path: str) -> tuple[Optional[str], bool]:
        """(the name relative to the experiment, whether it is a signed name); (None, False) outside it."""
        path = path.rstrip("/")
        if not path.startswith(self.root + "/"):
            return None, False
        rel = path[len(self.root) + 1:]
        parts = rel.split("/")
        top = len(parts) == 1
        return rel, (top and rel.endswith(PICKLE_SUFFIXES) and rel not in DATA_ONLY) or \
            (len(parts) == 2 and parts[1] == RAY_ERROR_PICKLE)

    def _bytes(self, path: str) -> Optional[bytes]:
        name, signed = self._name(path)
        if not signed:
            return None
        with self._lock:
            data = self.known.get(name)
        if data is None:
            raise FileNotFoundError(f"{path}: not among the files lico-tune verified or wrote")
        return data

    def _put(self, path: str, data: bytes) -> None:
        """Write a whole file: on a local disk through a temporary file and a rename, so that a kill
        leaves the old bytes or the new, never a cut file (an object store's PUT is whole already)."""
        if self.inner.type_name != "local":
            with self.inner.open_output_stream(path) as f:
                f.write(data)
            return
        tmp = f"{path}.lico-tmp"
        with self.inner.open_output_stream(tmp) as f:
            f.write(data)
        self.inner.move(tmp, path)

    def _write_manifest(self) -> None:
        files = {k: v[0] if len(v) == 1 else v for k, v in self.accepted.items()}
        self._put(f"{self.root}/{MANIFEST_FILE}", manifest_text(self.uri, files).encode())

    def _commit(self, path: str, name: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            before = self.current.get(name)
            self.accepted[name] = [d for d in dict.fromkeys([before, digest]) if d]
            _testing_pause("sign", name)
            self._write_manifest()               # first: a kill from here on finds the file's old or new bytes accepted
            _testing_pause("upload", name)
            self._put(path, data)
            self.current[name] = digest
            self.known[name] = data

    def seal(self) -> None:
        """Write the manifest of what storage holds now (the digests of earlier writes dropped)."""
        with self._lock:
            self.accepted = {k: [v] for k, v in self.current.items()}
            self._write_manifest()

    def get_file_info(self, paths):
        out = []
        for info in self.inner.get_file_info(paths):
            name, signed = self._name(info.path)
            if not signed or info.type == pafs.FileType.Directory:
                out.append(info)
            elif name in self.known:
                out.append(pafs.FileInfo(info.path, pafs.FileType.File, size=len(self.known[name]), mtime=info.mtime))
            else:
                out.append(pafs.FileInfo(info.path, pafs.FileType.NotFound))
        return out

    def get_file_info_selector(self, selector):
        return [i for i in self.inner.get_file_info(selector)
                if i.type == pafs.FileType.Directory or not self._name(i.path)[1] or self._name(i.path)[0] in self.known]

    def open_input_stream(self, path):
        data = self._bytes(path)
        return self.inner.open_input_stream(path) if data is None else pa.BufferReader(data)

    def open_input_file(self, path):
        data = self._bytes(path)
        return self.inner.open_input_file(path) if data is None else pa.BufferReader(data)

    def open_output_stream(self, path, metadata):
        name, signed = self._name(path)
        if name in DATA_ONLY:                    # lico-tune's own files come back from Ray's staging: drop them
            return pa.BufferOutputStream()
        if not signed:
            return self.inner.open_output_stream(path, metadata=metadata)
        return pa.PythonFile(_Held(lambda data: self._commit(path, name, data)), mode="w")

    def copy_file(self, src, dest):
        if self._bytes(src) is None and not self._name(dest)[1]:
            self.inner.copy_file(src, dest)
            return
        with self.open_input_stream(src) as f_in, self.open_output_stream(dest, None) as f_out:
            f_out.write(f_in.read())

    def move(self, src, dest):
        self.copy_file(src, dest)
        self.delete_file(src)

    def delete_file(self, path):
        self.inner.delete_file(path)
        name, signed = self._name(path)
        if signed:
            with self._lock:
                self.known.pop(name, None)
                self.current.pop(name, None)


TESTING_PAUSE_ENV = "LICO_TUNE_TESTING_PAUSE_AT"
_written: dict[str, int] = {}


def _testing_pause(point: str, name: str) -> None:
    """A testing aid (tests/tune/test_crash_resume_s3.py), off unless LICO_TUNE_TESTING_PAUSE_AT is set to
    POINT:PREFIX:N: at the Nth write of a signed name starting with PREFIX, at POINT ("sign": before
    the manifest is written; "upload": between the manifest and the file), the driver creates
    $LICO_TUNE_TESTING_PAUSE_DIR/paused and sleeps, so that a test can SIGKILL it in that window."""
    want = os.environ.get(TESTING_PAUSE_ENV)
    if not want:
        return
    at, prefix, n = want.split(":")
    if not name.startswith(prefix):
        return
    if point == "sign":
        _written[prefix] = _written.get(prefix, 0) + 1
    if at == point and _written.get(prefix) == int(n):
        Path(os.environ["LICO_TUNE_TESTING_PAUSE_DIR"], "paused").touch()
        time.sleep(3600)


def signed_filesystem(experiment_uri: str, verified: dict[str, bytes],
                      signed: dict[str, str]) -> tuple[pafs.PyFileSystem, str, _SignedHandler]:
    """(filesystem, the experiment's path on it, its handler) for Ray: Tuner(RunConfig(storage_filesystem=fs,
    storage_path=the parent of that path)) or Tuner.restore(path, storage_filesystem=fs). verified: {name:
    bytes} Ray may read (`resume`: trust.verified_bytes); signed: {name: SHA-256} the manifest lists now."""
    inner, fs_path = pafs.FileSystem.from_uri(experiment_uri if "://" in experiment_uri else f"file://{experiment_uri}")
    handler = _SignedHandler(inner, experiment_uri, fs_path, verified, signed)
    return pafs.PyFileSystem(handler), fs_path, handler
