"""True status after an interruption: real sweeps stopped by SIGINT, SIGTERM and SIGKILL.

Ray saves the trial that was running as RUNNING (and `ExperimentAnalysis` reads it back as
PENDING); `lico-tune report`, the catalog, summary.json and the dashboard must say 'interrupted',
and while the sweep runs, 'running'. A graceful stop leaves no trial scratch folder in the temp
folder. One sweep per signal, the three at once (3 seeds, one at a time, 40 epochs: the signal lands in
the first trial)."""
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ray_helpers import REPO, kill_started, private_tmpdir, ray_env, write_spec

SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
APP = REPO / "dashboards" / "app.py"


def _start_sweep(sig: str, spec: Path, storage: Path, scratch: Path) -> dict:
    tmpdir = private_tmpdir()
    exp = storage / sig.lower()
    driver = subprocess.Popen([sys.executable, "-m", "lico_tune.cli", "run", str(spec), "--storage", str(storage),
                               "--name", exp.name], cwd=REPO, env=ray_env(tmpdir, TMPDIR=str(scratch)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return {"sig": sig, "driver": driver, "tmpdir": tmpdir, "exp": exp, "scratch": scratch}


def _stop_sweep(run: dict, storage: Path) -> dict:
    """Read the results while the sweep's first trial runs, then stop it with its signal."""
    sig, driver, exp = run["sig"], run["driver"], run["exp"]
    deadline = time.time() + 240
    while time.time() < deadline and not list(exp.glob("trial_*/result.json")):
        assert driver.poll() is None, driver.stdout.read()
        time.sleep(0.3)
    from lico_tune.results import load_results
    live = load_results(str(storage), use_catalog=False).experiment(exp.name)
    seen = {"live": (live.experiments.iloc[0]["run_state"], set(live.trials["status"]))}
    if sig == "SIGKILL":
        os.killpg(driver.pid, signal.SIGKILL)
    else:
        driver.send_signal(getattr(signal, sig))
    out, _ = driver.communicate(timeout=180)
    return {**seen, "rc": driver.returncode, "out": out, "exp": exp, "scratch": run["scratch"]}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """The three sweeps run at once (each its own Ray), each stopped by its signal during its first
    trial (40 epochs: it cannot end before the signal lands)."""
    from conftest import TINY_TRIAL
    work = tmp_path_factory.mktemp("true_status")
    tree = copy.deepcopy(TINY_TRIAL)
    tree["train"].update(epochs=40, steps_per_epoch=4)
    spec = write_spec(work / "s.yaml", tree, name="s", search={"space": {"train.seed": {"grid": [0, 1, 2]}},
                                                              "max_concurrent": 1})
    storage = work / "res"
    started = []
    try:
        for sig in SIGNALS:
            scratch = work / f"tmp_{sig}"
            scratch.mkdir()
            started.append(_start_sweep(sig, spec, storage, scratch))
        runs = {run["sig"]: _stop_sweep(run, storage) for run in started}
    finally:
        for run in started:
            if run["driver"].poll() is None:
                os.killpg(run["driver"].pid, signal.SIGKILL)
                run["driver"].wait()
        left = kill_started([run["tmpdir"] for run in started])
        for run in started:
            shutil.rmtree(run["tmpdir"], ignore_errors=True)
    assert not left
    return storage, runs


def test_while_it_runs_the_trial_is_running(stopped):
    _, runs = stopped
    for sig, run in runs.items():
        assert run["live"] == ("running", {"running"}), (sig, run["live"])


@pytest.mark.parametrize("sig", SIGNALS)
def test_report_catalog_and_summary_say_interrupted(stopped, sig, capsys):
    storage, runs = stopped
    run = runs[sig]
    assert run["rc"] == {"SIGINT": 130, "SIGTERM": 143, "SIGKILL": -signal.SIGKILL}[sig], run["out"][-3000:]
    exp = run["exp"]
    # Ray's own reader: the trial it saved as RUNNING comes back PENDING, never as stopped.
    from ray.tune import ExperimentAnalysis
    ray_status = {t.trial_id: t.status for t in ExperimentAnalysis(str(exp)).trials}
    assert set(ray_status.values()) <= {"RUNNING", "PENDING"} and ray_status
    # The one adapter (results/tune_state.py, Ray-free) reads the same trials and Ray's saved status.
    from lico_tune.results.tune_state import latest_state_name, read_state
    from lico_tune.storage import Storage
    ours = read_state(Storage(str(exp)), str(exp), latest_state_name(p.name for p in exp.iterdir()))
    assert set(ours) == set(ray_status) and {s["status"] for s in ours.values()} <= {"RUNNING", "PENDING"}

    from lico_tune.cli import main                  # in this process: report needs no Ray
    assert main(["report", str(storage), "--experiment", exp.name, "--format", "json"]) == 0
    text = capsys.readouterr().out
    data = json.loads(text[text.index("{"):])["experiments"][0]
    assert data["status_counts"] == {"interrupted": len(ray_status)}, data["status_counts"]
    assert data["run_state"] == "interrupted" and data["planned_trials"] == 3
    assert ("stopped by " + sig) in data["run_note"] if sig != "SIGKILL" else "is gone" in data["run_note"]
    assert main(["report", str(storage), "--experiment", exp.name]) == 0
    assert f"started; continue it with `lico-tune resume {exp}`" in capsys.readouterr().out

    from lico_tune.results import Catalog           # the catalog `report` synced: the same statuses
    cat = Catalog(str(storage))
    assert {t["status"] for t in cat.trials(exp.name)} == {"interrupted"}
    (row,) = [e for e in cat.experiments() if e["experiment"] == exp.name]
    assert row["run_state"] == "interrupted"

    if sig != "SIGKILL":
        assert "== Summary of " + exp.name + ": 1 of 3 planned trials, 0 finished, 0 errored, 1 unfinished" in run["out"]
        summary = json.loads((exp / "summary.json").read_text())
        assert [r["status"] for r in summary] == ["interrupted"] * len(summary)
        # Ctrl-C and SIGTERM stop the trials gracefully: no scratch folder is left behind.
        assert not [p.name for p in run["scratch"].iterdir() if p.name.startswith("lico-")]


@pytest.mark.starts_server
def test_dashboard_shows_the_interrupted_experiments(stopped, monkeypatch):
    storage, runs = stopped
    monkeypatch.setenv("LICO_TUNE_STORAGE", str(storage))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    overview = at.dataframe[0].value.set_index("experiment")
    for sig in SIGNALS:
        row = overview.loc[sig.lower()]
        assert row["running"] == 0 and row["interrupted"] >= 1 and row["state"] == "interrupted", row.to_dict()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Running"] == "0" and int(metrics["Interrupted"]) >= 1


def test_a_driver_on_another_host_is_alive_while_its_heartbeat_is_fresh(tmp_path):
    from lico_tune.results.liveness import STALE_S, driver_alive, driver_state, read_driver
    from lico_tune.storage import Storage
    from lico_tune.tune.driver import driving
    store = Storage(str(tmp_path))
    with driving(str(tmp_path), every_s=0.05) as outcome:
        first = read_driver(store, str(tmp_path))
        time.sleep(0.3)
        beat = read_driver(store, str(tmp_path))
        assert beat["heartbeat"] > first["heartbeat"] and driver_state(store, str(tmp_path)).live
        outcome.set("SIGTERM")
    end = read_driver(store, str(tmp_path))
    assert end["outcome"] == "SIGTERM" and end["ended"] and not driver_alive(end)
    assert driver_state(store, str(tmp_path)).why == "stopped by SIGTERM"
    away = {**end, "ended": None, "host": "another-host", "pid": 1}
    assert driver_alive({**away, "heartbeat": time.time() - STALE_S / 2})
    assert not driver_alive({**away, "heartbeat": time.time() - STALE_S - 1})
    here = {**end, "ended": None, "proc_start": "0"}       # our PID, but another process's start time
    assert not driver_alive(here), "a reused PID is not the driver"


def test_experiments_from_before_the_driver_record_fall_back_to_their_summary_and_file_times(tmp_path):
    from lico_tune.results.liveness import LEGACY_RECENT_S, driver_state, true_status
    from lico_tune.storage import Storage
    store = Storage(str(tmp_path))
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    assert driver_state(store, str(tmp_path)).live, "files written just now: a sweep may be running"
    old = time.time() - LEGACY_RECENT_S - 60
    os.utime(tmp_path / "experiment_state-2026-01-01_00-00-00.json", (old, old))
    gone = driver_state(store, str(tmp_path))
    assert not gone.live and gone.state == "interrupted" and true_status("running", gone) == "interrupted"
    (tmp_path / "summary.json").write_text(json.dumps([{"interrupted": "SIGINT"}]))
    assert driver_state(store, str(tmp_path)).why == "stopped by SIGINT"
    (tmp_path / "summary.json").write_text(json.dumps([{"interrupted": None}]))
    done = driver_state(store, str(tmp_path))
    assert done.state == "finished" and true_status("finished", done) == "finished"
    assert true_status("errored", done) == "errored" and true_status("pending", done) == "interrupted"
