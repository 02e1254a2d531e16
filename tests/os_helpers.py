"""Helpers for tests of what the operating system can refuse: a root that respects file modes
(`NO_DAC`: this machine runs tests as root, which ignores them otherwise) and a small tmpfs (`Tmpfs`:
a read-only or full disk). Used by cli/test_environment_errors.py and storage/test_safe_files.py."""
from __future__ import annotations

import subprocess
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
