"""Helpers for tests that start Ray: a private RAY_TMPDIR per test, the `lico-tune` CLI in a
subprocess, and cleanup of exactly the processes a test started.

Every process a test starts (the driver, `ray start`, and all the Ray daemons and workers they
spawn) inherits the test's private RAY_TMPDIR, so cleanup finds them by that entry in
/proc/PID/environ and signals those PIDs only; it never runs `ray stop`, which would stop every
Ray process on the machine.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def private_tmpdir() -> str:
    # Short: Ray's unix socket paths under it must stay below 108 characters.
    return tempfile.mkdtemp(prefix="rt", dir="/tmp")


def ray_env(tmpdir: str, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        RAY_TMPDIR=tmpdir, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.update(extra)
    return env


def pids_with_tmpdir(tmpdir: str) -> list[int]:
    """PIDs of the processes whose environment holds RAY_TMPDIR=tmpdir (the ones this test started)."""
    marker = f"RAY_TMPDIR={tmpdir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


def kill_started(tmpdirs: list[str], grace_s: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL, the processes started with any of `tmpdirs`; returns what was left."""
    pids = [p for d in tmpdirs for p in pids_with_tmpdir(d)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace_s
        while time.time() < deadline:
            pids = [p for d in tmpdirs for p in pids_with_tmpdir(d)]
            if not pids:
                return []
            time.sleep(0.2)
    return pids


@pytest.fixture
def ray_tmp():
    """A private RAY_TMPDIR; afterwards every process started with it is stopped and it is removed."""
    tmpdir = private_tmpdir()
    yield tmpdir
    left = kill_started([tmpdir])
    shutil.rmtree(tmpdir, ignore_errors=True)
    assert not left, f"processes left running: {left}"


def lico_tune(args: list[str], tmpdir: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run `lico-tune ARGS` (as `python -m lico_tune.cli`) in its own session with a private RAY_TMPDIR."""
    proc = subprocess.Popen([sys.executable, "-m", "lico_tune.cli", *args], cwd=REPO,
                            env=ray_env(tmpdir, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"lico-tune {' '.join(args)} ran over {timeout}s:\n{out[-6000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def lico_tune_cleanly(args: list[str], timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`lico_tune` with a fresh private RAY_TMPDIR, for fixtures without `ray_tmp`: afterwards every
    process it started is stopped and the directory removed; fails if any process was left running."""
    tmpdir = private_tmpdir()
    try:
        out = lico_tune(args, tmpdir, timeout, **env)
    finally:
        left = kill_started([tmpdir])
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert not left, f"processes left running by lico-tune {' '.join(args)}: {left}"
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_spec(path: Path, trial_tree: dict, **sections) -> Path:
    """A spec file from a trial tree (the `tiny_trial_tree` fixture) plus spec sections."""
    tree = {"name": sections.pop("name", "t"), "base": trial_tree, **sections}
    tree["base"]["train"]["threads"] = 1
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.iterdir() if p.is_dir() and p.name.startswith("trial_"))


def result_rows(trial_dir: Path) -> list[dict]:
    import json
    file = trial_dir / "result.json"
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()] if file.exists() else []
