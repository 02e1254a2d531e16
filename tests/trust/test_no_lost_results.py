"""Issue 24, nothing lost: real `lico-tune` processes and real Ray on the tiny digits trial.

* `run` into a name that already holds an experiment is refused (exit 2, one paragraph naming the
  directory and `lico-tune resume`), and not one byte under the storage root changes.
* One driver per experiment: two `run --name same` started at once, and `resume` while the run
  goes on, are refused naming the holder; the first run finishes every trial. A lock left by a
  dead driver is taken over with a notice; SIGTERM releases it, SIGKILL leaves it to be taken over.
* A state Ray cannot restore is refused by `resume` (exit 2), never run afresh: every file under
  the root stays as it was (SHA-256 of each), summary.json included.
* Concurrent `lico-tune index` runs on one root all succeed.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lico_tune.layout import DRIVER_FILE, LOCK_FILE, SUMMARY_FILE
from lico_tune.trust import sign_experiment
from conftest import assert_refused, checksums
from ray_helpers import REPO, kill_started, lico_tune, private_tmpdir, ray_env, trial_dirs, write_spec


def summary_rows(exp: Path) -> list[dict]:
    return json.loads((exp / SUMMARY_FILE).read_text())


# `finished`: one finished experiment of 2 seeds (tests/results_fixtures.py), one per test session.
pytest_plugins = ["results_fixtures"]


def _copy(finished, tmp_path: Path) -> Path:
    """A copy of the finished experiment in a root of its own (a test may damage it)."""
    root = tmp_path / "res"
    shutil.copytree(finished["exp"], root / "done")
    return root / "done"


# ----------------------------------------------------------------------------- 1. run into an existing name

def test_run_into_an_existing_experiment_is_refused_and_changes_nothing(finished, ray_tmp):
    root, exp = finished["root"], finished["exp"]
    before = checksums(root)
    t0 = time.monotonic()
    out = lico_tune(["run", str(finished["spec"]), "--storage", str(root), "--name", "done"], ray_tmp, timeout=120)
    took = time.monotonic() - t0
    msg = assert_refused(out, str(exp), f"lico-tune resume {exp}", "--name", fix=False, alone=False)
    assert "already holds an experiment" in msg
    assert took < 60, f"refused only after {took:.0f} s: the check must come before Ray starts"
    assert checksums(root) == before


def test_run_into_a_non_empty_directory_is_refused(finished, ray_tmp, tmp_path):
    """Not an experiment of ours, but not empty either: nothing of it may be mixed or overwritten."""
    exp = tmp_path / "res" / "mine"
    exp.mkdir(parents=True)
    (exp / "notes.txt").write_text("mine")
    before = checksums(tmp_path / "res")
    out = lico_tune(["run", str(finished["spec"]), "--storage", str(tmp_path / "res"), "--name", "mine"], ray_tmp,
                    timeout=120)
    assert "is not empty" in assert_refused(out, str(exp), "notes.txt", fix=False, alone=False)
    assert checksums(tmp_path / "res") == before


def test_only_a_missing_or_empty_experiment_directory_counts_as_new(tmp_path, tiny_trial_tree):
    from lico_tune.errors import OutputExists
    from lico_tune.plan import plan_search
    from lico_tune.plan.preflight import check_new_experiment
    from lico_tune.spec import validate_spec
    plan = plan_search(validate_spec({"name": "n", "base": tiny_trial_tree}), name="x", storage=str(tmp_path))
    check_new_experiment(plan)                       # missing
    (tmp_path / "x").mkdir()
    check_new_experiment(plan)                       # empty
    (tmp_path / "x" / LOCK_FILE).write_text("{}")
    check_new_experiment(plan)                       # only its lock: a run of ours that took it a moment ago
    (tmp_path / "x" / DRIVER_FILE).write_text("{}")
    with pytest.raises(OutputExists, match="is not empty"):
        check_new_experiment(plan)


# ----------------------------------------------------------------------------- 2. one driver per experiment

def _start(args: list[str], tmpdir: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lico_tune.cli", *args], cwd=REPO, env=ray_env(tmpdir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_one_driver_per_experiment(tmp_path, tiny_trial_tree):
    """Two `run --name same` started at once: one runs, the other is refused. `resume` while it runs
    is refused naming its PID. The run then finishes every trial, none ERROR, and releases its lock."""
    tree = copy.deepcopy(tiny_trial_tree)
    tree["train"].update(epochs=6, steps_per_epoch=4)
    spec = write_spec(tmp_path / "c.yaml", tree, name="c",
                      search={"space": {"train.seed": {"grid": [0, 1]}}, "max_concurrent": 1})
    root, exp = tmp_path / "res", tmp_path / "res" / "same"
    tmpdirs = [private_tmpdir() for _ in range(3)]
    args = ["run", str(spec), "--storage", str(root), "--name", "same", "--status-every", "0"]
    procs = [_start(args, tmpdirs[0]), _start(args, tmpdirs[1])]
    try:
        deadline = time.time() + 240
        while time.time() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        loser = next((p for p in procs if p.poll() is not None), None)
        assert loser is not None, "neither run was refused within 240 s"
        winner = procs[1 - procs.index(loser)]
        lost = subprocess.CompletedProcess(loser.args, loser.returncode, loser.communicate()[0], "")
        msg = assert_refused(lost, str(exp), fix=False, alone=False)
        assert ("being run by another lico-tune driver" in msg and f"pid {winner.pid}" in msg) or \
            "already holds an experiment" in msg, msg
        assert winner.poll() is None, "the first run ended with the second: " + winner.communicate()[0][-3000:]

        while time.time() < deadline and not list(exp.glob("trial_*/result.json")):   # its first trial runs
            assert winner.poll() is None, winner.communicate()[0][-3000:]
            time.sleep(0.2)
        assert json.loads((exp / LOCK_FILE).read_text())["pid"] == winner.pid
        t0 = time.monotonic()
        resumed = lico_tune(["resume", str(exp)], tmpdirs[2], timeout=120)
        assert time.monotonic() - t0 < 60
        assert_refused(resumed, str(exp), f"pid {winner.pid}", "lico-tune resume", fix=False, alone=False)
        assert winner.poll() is None, "the refused resume stopped the run"

        out, _ = winner.communicate(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        left = kill_started(tmpdirs)
        for d in tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
    assert not left, f"processes left running: {left}"
    assert winner.returncode == 0, out[-4000:]
    assert "== Summary of same: 2 trials, 2 finished, 0 errored ==" in out, out[-3000:]
    rows = summary_rows(exp)
    assert len(rows) == 2 and all(r["finished"] and r["error"] is None and r["epoch"] == 6 for r in rows)
    assert len(trial_dirs(exp)) == 2
    assert not (exp / LOCK_FILE).exists()
    assert json.loads((exp / DRIVER_FILE).read_text())["outcome"] == "finished"


_HOLDER = textwrap.dedent("""\
    import sys, time
    from lico_tune.trust.lock import experiment_lock
    with experiment_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
""")


def _hold(exp: Path, env: dict) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(exp)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_refused_driver_names_a_holder_that_writes_its_record_late(tmp_path):
    """A holder writes its record just after it takes the flock: a contender that reads the file in
    between must wait for it and name the holder, not 'pid ?' (seen once in CI on an idle machine)."""
    import fcntl
    import threading

    from lico_tune.errors import ExperimentBusy
    from lico_tune.trust.lock import experiment_lock
    exp = tmp_path / "e"
    exp.mkdir()
    fd = os.open(exp / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)                  # taken; the record comes 0.3 s later
        record = {"pid": 4242, "host": "elsewhere", "started": "2026-12-05T20:00:00+00:00"}
        late = threading.Timer(0.3, lambda: os.pwrite(fd, json.dumps(record).encode(), 0))
        late.start()
        with pytest.raises(ExperimentBusy, match="pid 4242 on host elsewhere"):
            with experiment_lock(str(exp)):
                pass
        late.join()
    finally:
        os.close(fd)


def test_the_lock_is_released_on_sigterm_and_taken_over_after_sigkill(tmp_path):
    """A holder outside Ray (the CLI holds the lock before Ray loads): a second process is refused
    naming its PID; SIGTERM releases the lock; after SIGKILL the file stays, names a dead PID, and
    the next driver takes it over with a one-line notice."""
    from lico_tune.errors import ExperimentBusy
    from lico_tune.trust.lock import experiment_lock
    exp = tmp_path / "e"
    exp.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    holder = _hold(exp, env)
    try:
        with pytest.raises(ExperimentBusy, match=f"pid {holder.pid} on host"):
            with experiment_lock(str(exp)):
                pass
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(timeout=30) == 128 + signal.SIGTERM
        assert not (exp / LOCK_FILE).exists()

        holder = _hold(exp, env)
        holder.kill()
        holder.wait(timeout=30)
        assert json.loads((exp / LOCK_FILE).read_text())["pid"] == holder.pid    # a crash leaves it
        said = []
        with experiment_lock(str(exp), say=said.append) as rec:
            assert rec["pid"] == os.getpid()
            assert json.loads((exp / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert len(said) == 1 and f"pid {holder.pid}" in said[0] and "took over" in said[0]
        assert not (exp / LOCK_FILE).exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_resume_takes_over_a_stale_lock(finished, ray_tmp, tmp_path):
    """A lock file left by a SIGKILLed driver (its PID is dead): `resume` says so and goes on."""
    exp = _copy(finished, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (exp / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "proc_start": "1",
                                             "started": time.time() - 60}))
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=240)
    assert out.returncode == 0, out.stdout[-4000:]
    assert f"notice: took over the lock {exp / LOCK_FILE} left by pid {dead.pid}" in out.stdout
    assert not (exp / LOCK_FILE).exists()
    assert len(summary_rows(exp)) == 2


# ----------------------------------------------------------------------------- 3. a state Ray cannot restore

def _newest_state(exp: Path) -> Path:
    return sorted(exp.glob("experiment_state-*.json"))[-1]


def test_resume_of_a_damaged_state_file_is_refused_before_ray(finished, ray_tmp, tmp_path):
    """Cut short (as a full disk leaves it): measured before the fix, Ray started a new one-trial
    run in the directory, replaced summary.json and exited 0."""
    exp = _copy(finished, tmp_path)
    state = _newest_state(exp)
    state.write_bytes(state.read_bytes()[:200])
    sign_experiment(str(exp))                  # trusted on purpose (`lico-tune trust`): the state check still refuses
    before = checksums(tmp_path / "res")
    t0 = time.monotonic()
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=120)
    assert time.monotonic() - t0 < 60
    msg = assert_refused(out, str(exp), state.name, "not valid JSON", "lico-tune run", fix=False, alone=False)
    assert "resuming" not in out.stdout and "epoch" not in out.stdout.replace(msg, "")
    assert checksums(tmp_path / "res") == before


def test_resume_of_a_state_ray_fails_to_restore_is_refused(finished, ray_tmp, tmp_path):
    """Valid JSON naming every trial, but a trial's pickled part is garbage: only Ray finds out (it
    logs 'Failed to restore the run state' and would restart the experiment)."""
    exp = _copy(finished, tmp_path)
    state = _newest_state(exp)
    data = json.loads(state.read_text())
    trial = json.loads(data["trial_data"][0][0])
    trial["storage"]["value"] = "00ff"
    data["trial_data"][0][0] = json.dumps(trial)
    state.write_text(json.dumps(data))
    sign_experiment(str(exp))                  # trusted on purpose (`lico-tune trust`): Ray's restore still fails
    before = checksums(tmp_path / "res")
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=240)
    msg = assert_refused(out, str(exp), "Ray Tune failed to restore its state", "UnpicklingError", fix=False, alone=False)
    assert "changed nothing" in msg
    assert "epoch 1" not in out.stdout and "Summary of" not in out.stdout
    assert checksums(tmp_path / "res") == before               # summary.json and lico_driver.json too


def test_resume_without_any_state_file_is_refused(finished, ray_tmp, tmp_path):
    exp = _copy(finished, tmp_path)
    for state in exp.glob("experiment_state-*.json"):
        state.unlink()
    before = checksums(tmp_path / "res")
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=120)
    assert_refused(out, str(exp), "no Ray Tune experiment state", fix=False, alone=False)
    assert checksums(tmp_path / "res") == before


# ----------------------------------------------------------------------------- the catalog

def test_concurrent_index_runs_on_one_root_all_succeed(finished, tmp_path):
    """Three `lico-tune index` at once, into a new catalog and then into the one they made."""
    root = tmp_path / "res"
    shutil.copytree(finished["exp"], root / "done")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HOME": str(tmp_path / "home")}
    env.pop("LICO_TUNE_CATALOG", None)
    for _ in range(2):
        procs = [subprocess.Popen([sys.executable, "-m", "lico_tune.cli", "index", str(root)], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
        outs = [p.communicate(timeout=180)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(o[-2000:] for o in outs)
        assert all("indexed 1 experiment(s), 2 trial(s)" in o for o in outs), outs
