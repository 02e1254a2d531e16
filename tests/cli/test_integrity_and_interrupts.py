"""Issue 11 beyond the corpus: preflight, integrity (tuner.pkl, checkpoint tensors, final
weights), read-only readers, failed downloads, the dashboard's SIGTERM, and Ctrl-C of `run`."""
from __future__ import annotations

import copy
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from lico_tune.cli import main
from lico_tune.errors import SpecError
from lico_tune.layout import CATALOG_FILE, MANIFEST_FILE, RUN_FILE, TUNER_FILE
from lico_tune.plan import plan_search
from lico_tune.spec import validate_spec
from conftest import MarkerPayload
from ray_helpers import REPO, kill_started, ray_env, write_spec


def _spec(tree: dict, **sections):
    return validate_spec({"name": "h", "base": tree, **sections})


@pytest.fixture
def no_ray(monkeypatch):
    fake = types.ModuleType("lico_tune.tune")

    def _no_ray(*_a, **_k):
        raise AssertionError("Ray was reached")
    fake.run = fake.resume = _no_ray
    monkeypatch.setitem(sys.modules, "lico_tune.tune", fake)


# ----------------------------------------------------------------------------- preflight


def test_gpu_spec_on_a_cpu_machine_is_refused_before_ray(tmp_path, tiny_trial_tree, capsys, no_ray, monkeypatch):
    monkeypatch.setattr("lico_tune.plan.preflight.local_resources", lambda: {"CPU": 2.0, "GPU": 0.0})
    spec = write_spec(tmp_path / "g.yaml", tiny_trial_tree, resources={"cpu": 1, "gpu": 1},
                      storage=str(tmp_path / "res"))
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "resources.gpu=1" in err and "--set resources.gpu=0" in err
    assert not (tmp_path / "res").exists()


def test_smoke_test_of_a_gpu_spec_runs_on_cpu_with_a_notice(tiny_trial_tree):
    from lico_tune.plan.preflight import check_resources
    from lico_tune.plan.resolve import resolve_trial
    tree = copy.deepcopy(tiny_trial_tree)
    tree["train"]["device"] = "cuda"
    plan = plan_search(_spec(tree, resources={"cpu": 1, "gpu": 1}), name="x", storage="/tmp/unused", smoke=True)
    said = []
    check_resources(plan, {"CPU": 2, "GPU": 0}, say=said.append)
    assert len(said) == 1 and "runs on the CPU" in said[0]
    assert plan.spec.resources.gpu == 0
    assert all(resolve_trial(plan.runtime(), c).train.device == "cpu" for c in plan.cells)
    # the same spec without --smoke-test is refused, naming the fix
    full = plan_search(_spec(tree, resources={"cpu": 1, "gpu": 1}), name="x", storage="/tmp/unused")
    with pytest.raises(SpecError, match=r"--set resources.gpu=0"):
        check_resources(full, {"CPU": 2, "GPU": 0})
    with pytest.raises(SpecError, match=r"resources.cpu=2"):
        check_resources(plan_search(_spec(tiny_trial_tree, resources={"cpu": 3}), name="x", storage="/tmp/unused"),
                        {"CPU": 2, "GPU": 0})


# ----------------------------------------------------------------------------- tuner.pkl


def _experiment(tmp_path: Path, tree: dict) -> Path:
    from lico_tune.trust import sign_experiment
    plan = plan_search(_spec(tree), name="e", storage=str(tmp_path / "res"))
    exp = Path(plan.experiment_path)
    exp.mkdir(parents=True)
    (exp / RUN_FILE).write_text(plan.to_yaml())
    (exp / TUNER_FILE).write_bytes(pickle.dumps({"a plain": "state"}))
    sign_experiment(str(exp))
    return exp


def test_a_replaced_tuner_pkl_is_refused_before_it_is_unpickled(tmp_path, tiny_trial_tree, capsys, no_ray):
    from lico_tune.plan.preflight import check_resume
    exp = _experiment(tmp_path, tiny_trial_tree)
    check_resume(str(exp))                                        # untouched: accepted
    marker = tmp_path / "pwned"
    (exp / TUNER_FILE).write_bytes(pickle.dumps(MarkerPayload(marker)))
    assert main(["resume", str(exp)]) == 2
    err = capsys.readouterr().err
    assert TUNER_FILE in err and "changed since" in err and "Traceback" not in err
    assert not marker.exists()                                    # nothing was unpickled


def test_an_edited_run_file_or_a_missing_manifest_is_refused(tmp_path, tiny_trial_tree, capsys, no_ray):
    exp = _experiment(tmp_path, tiny_trial_tree)
    (exp / RUN_FILE).write_text((exp / RUN_FILE).read_text() + "\n# edited\n")
    assert main(["resume", str(exp)]) == 2
    assert RUN_FILE in capsys.readouterr().err
    (exp / MANIFEST_FILE).unlink()
    assert main(["resume", str(exp)]) == 2
    assert MANIFEST_FILE in capsys.readouterr().err


# ----------------------------------------------------------------------------- checkpoints and weights


def test_checkpoint_checksum_detects_a_flipped_weight_byte(tmp_path):
    import torch
    from lico_tune.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from lico_tune.spec import TrialConfig
    w = torch.arange(256, dtype=torch.float32)
    state = {"model": {"w": w}, "config": TrialConfig().model_dump(mode="json"), "epoch": 1}
    path = save_checkpoint(state, tmp_path / "c.pt")
    assert torch.equal(load_checkpoint(path)["model"]["w"], w)     # intact: loads
    data = bytearray(path.read_bytes())
    at = data.find(w.numpy().tobytes())
    data[at + 17] ^= 0x01                                          # one bit of one weight
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["w"], w)   # torch alone does not notice
    with pytest.raises(CheckpointError, match="damaged or not a lico-tune checkpoint"):
        load_checkpoint(path)


def test_a_trial_whose_weights_diverge_on_its_last_step_exits_non_zero(tmp_path, tiny_trial_tree, capsys):
    """Loss weights near float32's largest (alpha = beta = 1e37, which the spec allows) keep the first
    (and last) loss finite, and lr 100 (the spec's largest) turns the updated weights inf/nan."""
    tree = copy.deepcopy(tiny_trial_tree)
    tree["train"].update(epochs=1, steps_per_epoch=1, lr=100.0, ema=None)
    tree["lico"].update(alpha=1e37, beta=1e37)
    spec = write_spec(tmp_path / "d.yaml", tree)
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "weight tensors are not finite after epoch 1" in err
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()


# ----------------------------------------------------------------------------- readers, downloads


def test_readers_never_create_a_catalog_in_a_root_they_only_read(tmp_path, tiny_trial_tree, monkeypatch):
    from lico_tune.results.catalog import catalog_in_root, default_url
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LICO_TUNE_CATALOG", raising=False)
    exp = _experiment(tmp_path, tiny_trial_tree)
    root = exp.parent
    assert not catalog_in_root(root)                    # a reader: no catalog there yet
    assert catalog_in_root(root, build=True)            # run's callback or `index`: the user's own root
    assert str(tmp_path / "home") in default_url(str(root))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not catalog_in_root(empty, build=True)       # no experiment: not a results root of ours
    (root / CATALOG_FILE).write_bytes(b"")
    assert catalog_in_root(root)                        # it already holds one: kept current there


def test_a_failed_download_leaves_no_empty_cache_folder(tmp_path):
    from lico_tune.data.paths import download_lock
    target = tmp_path / "cache" / "lico-tune" / "cifar10"
    with pytest.raises(ConnectionError):
        with download_lock(target):
            raise ConnectionError("no internet")
    assert not (tmp_path / "cache").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(ConnectionError):
        with download_lock(tmp_path / "kept" / "svhn"):
            raise ConnectionError("no internet")
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "svhn").exists()


# ----------------------------------------------------------------------------- the dashboard


@pytest.mark.starts_server
def test_dashboard_exits_on_sigterm_and_stops_streamlit(tmp_path):
    """SIGTERM to `lico-tune dashboard` alone (not its group): it passes the signal on and waits;
    the `starts_server` fixture then checks that no Streamlit process is left."""
    sys.path.insert(0, str(REPO / "dashboards"))
    from screenshot import _get, free_port
    root = tmp_path / "root"
    root.mkdir()
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "lico_tune.cli", "dashboard", str(root), "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            assert proc.poll() is None, "the dashboard exited early"
            try:
                if _get(f"http://127.0.0.1:{port}/_stcore/health", 1.0).strip() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise AssertionError("the dashboard never answered")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(root.iterdir()) == []                   # a root it only read stays untouched


# ----------------------------------------------------------------------------- Ctrl-C of run


@pytest.mark.slow
def test_ctrl_c_of_run_exits_130_says_interrupted_and_resume_finishes(ray_tmp, tmp_path, tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["train"].update(epochs=3, steps_per_epoch=4)
    spec = write_spec(tmp_path / "i.yaml", tree, search={"space": {"train.seed": {"grid": [0, 1]}},
                                                          "max_concurrent": 1})
    storage = tmp_path / "res"
    exp = storage / "i"
    driver = subprocess.Popen([sys.executable, "-m", "lico_tune.cli", "run", str(spec), "--storage", str(storage),
                               "--name", "i"], cwd=REPO, env=ray_env(ray_tmp), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(exp.glob("trial_*/result.json")):
            assert driver.poll() is None, driver.stdout.read()
            time.sleep(0.3)
        driver.send_signal(signal.SIGINT)                 # Ctrl-C (to the driver, as `kill -INT` does)
        out, _ = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    kill_started([ray_tmp])
    assert driver.returncode == 130, out[-3000:]
    assert "INTERRUPTED by SIGINT" in out
    summary = json.loads((exp / "summary.json").read_text())     # records: one per trial
    assert all(r["experiment_finished"] is False and r["interrupted"] == "SIGINT" for r in summary)

    # The resume starts its local Ray as a user would: RAY_AUTH_MODE unset (Ray >= 2.59 then turns
    # token auth on, making a token under HOME). Ray's notice saying so must not reach the user;
    # the protection must stay (the token is made).
    env = {k: v for k, v in ray_env(ray_tmp, HOME=str(tmp_path / "home")).items() if k != "RAY_AUTH_MODE"}
    resumed = subprocess.run([sys.executable, "-m", "lico_tune.cli", "resume", str(exp)], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Token authentication" not in resumed.stdout + resumed.stderr
    assert (tmp_path / "home" / ".ray" / "auth_token").is_file()
    summary = json.loads((exp / "summary.json").read_text())
    assert all(r["experiment_finished"] is True and r["interrupted"] is None for r in summary)
    assert len(summary) == 2 and all(t["finished"] and t["epoch"] == 3 for t in summary)
