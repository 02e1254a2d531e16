"""Helpers for tests of what the operating system can refuse: a root that respects file modes
(`NO_DAC`: this machine runs tests as root, which ignores them otherwise) and a small tmpfs (`Tmpfs`:
a read-only or full disk), filling a disk, the temporary files an atomic write may leave, and a call
that must not block (a FIFO opened for reading waits forever). Used by cli/test_environment_errors.py
and storage/test_safe_files.py, test_safe_layer.py."""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]   # root that respects file modes


class Tmpfs:
    """A tmpfs of `size` mounted at `path` (read-only with `remount_ro`); unmounted on exit."""

    def __init__(self, path: Path, size: str):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if got.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs here (the test needs root): {got.stderr.strip()}")

    def remount_ro(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def fill(disk: Path) -> None:
    """Write a filler file until the filesystem at `disk` is full."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28, exc
    finally:
        os.close(fd)


def temporary_files(d: Path) -> list[str]:
    """What write_atomic leaves if it fails to clean up: .<name>.<random>.tmp."""
    return [p.name for p in d.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def in_time(fn, timeout_s: float = 30.0):
    """fn() in a thread that must end within timeout_s (a FIFO opened without O_NONBLOCK waits forever)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:     # noqa: BLE001 - handed to the test
            box["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout_s)
    assert not t.is_alive(), f"still reading after {timeout_s} s (a FIFO or device was opened blocking)"
    if "error" in box:
        raise box["error"]
    return box.get("value")
