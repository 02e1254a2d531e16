"""`lico-tune resume`: SIGKILL the driver's process group once the first trial has finished, then
resume. Every trial completes once, finished trials are not run again, and no result is lost; an
earlier experiment in the same root stays byte for byte as it was; and the Ray-free results
readers read the resumed experiment as Ray's own reader does."""
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import checksums
from lico_tune.results.reported import epoch_metrics, once_per_epoch
from ray_helpers import REPO, kill_started, lico_tune, ray_env, result_rows, trial_dirs, write_spec

EPOCHS = 3


def trial_statuses(experiment: Path) -> dict[str, str]:
    """Trial id -> status in the newest experiment-state snapshot Tune has written to storage."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except (json.JSONDecodeError, OSError):  # being rewritten
        return {}
    return {json.loads(t)["trial_id"]: json.loads(t)["status"] for t, _ in data["trial_data"]}


def test_resume_after_the_driver_is_killed(ray_tmp, tmp_path, tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["train"].update(epochs=EPOCHS, steps_per_epoch=4)
    spec = write_spec(tmp_path / "r.yaml", tree, search={"space": {"train.seed": {"grid": [0, 1, 2]}},
                                                          "max_concurrent": 2})
    storage = tmp_path / "res"
    experiment = storage / "r"
    # An earlier experiment in the same root: a published trial of the converged study.
    published = next((REPO / "docs" / "study" / "results").glob("study-converged_*/trial_*_00000_ce"))
    earlier = storage / "earlier"
    shutil.copytree(published, earlier / published.name)
    shutil.copy(published.parent / "lico_run.yaml", earlier / "lico_run.yaml")
    earlier_before = checksums(earlier)
    driver = subprocess.Popen([sys.executable, "-m", "lico_tune.cli", "run", str(spec), "--storage", str(storage),
                               "--name", "r"], cwd=REPO, env=ray_env(ray_tmp), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            status = trial_statuses(experiment) if experiment.exists() else {}
            if "TERMINATED" in status.values():
                break
            assert driver.poll() is None, "the driver ended before any trial finished"
            time.sleep(0.3)
        else:
            raise AssertionError("no trial finished within 240 s")
        os.killpg(driver.pid, signal.SIGKILL)      # the driver and everything in its process group
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert list(status.values()).count("TERMINATED") < 3, "killed too late: every trial had finished"
    assert checksums(earlier) == earlier_before, "the killed driver changed an earlier experiment"
    # Ray daemons the driver started outside its process group (DashboardAgent, RuntimeEnvAgent...)
    # are ours too: stop them by PID before resuming.
    assert not kill_started([ray_tmp])

    finished = {tid for tid, s in status.items() if s == "TERMINATED"}
    before = {d.name: (d / "result.json").read_bytes() for d in trial_dirs(experiment)
              if any(tid in d.name for tid in finished)}
    assert len(before) == len(finished) >= 1

    out = lico_tune(["resume", str(experiment)], ray_tmp, timeout=240)
    assert out.returncode == 0, out.stdout[-5000:]
    assert "== Summary of r: 3 trials, 3 finished, 0 errored ==" in out.stdout
    assert "Failed to fetch metrics" not in out.stdout, "Ray's line per trial without results yet (tune/restore.py)"
    assert checksums(earlier) == earlier_before, "resume changed an earlier experiment"

    dirs = trial_dirs(experiment)
    assert len(dirs) == 3
    assert set(trial_statuses(experiment).values()) == {"TERMINATED"}
    for d in dirs:
        rows = result_rows(d)
        # A trial killed after its last epoch but before Ray recorded it restarts from its final checkpoint
        # and reports its recorded metrics again: that repeated row must equal the first in every metric
        # (a re-report, not a retrained epoch, whose timings would differ); the reader keeps one.
        history = [epoch_metrics(r) for r in rows]
        assert [m["epoch"] for m in once_per_epoch(history)] == list(range(1, EPOCHS + 1)), \
            f"{d.name}: {[m['epoch'] for m in history]}"
        assert len(history) - len(once_per_epoch(history)) <= 1, f"{d.name}: {[m['epoch'] for m in history]}"
        if d.name in before:   # finished before the kill: not run again, its results untouched
            assert (d / "result.json").read_bytes() == before[d.name]
            assert "restored" not in (d / "train.log").read_text()
    summary = json.loads((experiment / "summary.json").read_text())   # records: one per trial
    assert sorted(t["params"]["train.seed"] for t in summary) == [0, 1, 2]
    assert all(t["epoch"] == EPOCHS and t["error"] is None for t in summary)

    # The Ray-free readers agree with Ray's on this experiment that Ray itself wrote, was killed and
    # resumed: two sessions, so two state files; the newest by name is the one Ray restores from.
    from ray.tune import ExperimentAnalysis
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

    from lico_tune.results.tune_state import latest_state_name, read_state
    from lico_tune.storage import Storage

    states = sorted(p.name for p in experiment.glob("experiment_state-*.json"))
    assert len(states) >= 2, states
    ours = latest_state_name(p.name for p in experiment.iterdir())
    assert ours == Path(_find_newest_experiment_checkpoint(str(experiment))).name
    ray_status = {t.trial_id: t.status for t in ExperimentAnalysis(str(experiment)).trials}
    our_status = {tid: s["status"] for tid, s in read_state(Storage(str(experiment)), str(experiment), ours).items()}
    assert our_status == ray_status and set(ray_status.values()) == {"TERMINATED"}

    # After a resume Ray may re-sync the pre-kill state file, so it can carry the latest mtime (seen
    # on main: `report` then said "1 finished, 2 running"). Make that so here: the report must
    # still follow Ray's rule (newest name), not the mtime.
    future = time.time() + 60
    os.utime(experiment / states[0], (future, future))
    rep = lico_tune(["report", str(storage), "--format", "json"], ray_tmp, timeout=120)
    assert rep.returncode == 0, rep.stdout[-3000:]
    experiments = {e["experiment"]: e for e in json.loads(rep.stdout[rep.stdout.index("{"):])["experiments"]}
    assert set(experiments) == {"r", "earlier"}
    data = experiments["r"]
    assert data["status_counts"] == {"finished": 3}, data["status_counts"]
