"""Results roots for tests/test_results.py and tests/test_dashboard.py, made by REAL sweeps once
per test session (`lico-tune run` in a subprocess with a private RAY_TMPDIR; every process it
started is stopped afterwards by PID).

`results_root` holds one experiment, ablation-smoke: the quick start's design in miniature. Arms
ce, lico and broken x datasets digits and fashion_mnist x seeds 0 and 1, with lico.ot.epsilon drawn
at random per trial (a searched numeric parameter) = 12 trials of 2 epochs of 3 steps (tiny CNN +
MiniLM; Grad-CAM saliency on 8 fixed test images, a gallery of 3). The broken arm diverges at its
first step, so its 4 trials error (quickly: no text encoder).
search.build_tuner registers the catalog callback, so the catalog the sweep leaves behind at the
root is the callback's (a copy is kept as catalog_after_sweep.db before any test syncs it).

`finished` holds one finished experiment of 2 seeds of the tiny trial (1 epoch each), <root>/done,
for the tests of what run, resume, trust and index do to an experiment (copy it to change it).

Use them from a test module with `pytest_plugins = ["results_fixtures"]`: the session fixture is then
defined once, so one sweep serves every module (importing it would define it once per module).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from ray_helpers import kill_started, lico_tune, private_tmpdir, write_spec

from lico_tune.layout import LOCK_FILE, SUMMARY_FILE

BASE = {
    "data": {"name": "digits", "train_subset": 512, "test_subset": 256},
    "model": {"backbone": "tiny_cnn"},
    "text": {"encoder": "hf", "model": "minilm", "n_ctx": 4, "features": "eot"},
    "lico": {"alpha": 1.0, "beta": 1.0},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "steps_per_epoch": 3, "seed": 0, "ema": 0.9,
              "threads": 1, "log_every": 50},
    "eval": {"cams": ["gradcam"], "n_images": 8, "gallery_images": 3, "batch_size": 512},
}
ABLATION = {
    "name": "ablation-smoke", "base": BASE,
    "ablation": {"ce": {"lico.alpha": 0, "lico.beta": 0}, "lico": {},
                 "broken": {"lico.alpha": 0, "lico.beta": 0, "train.fail_at_step": 0}},
    "search": {"space": {"data.name": {"grid": ["digits", "fashion_mnist"]}, "train.seed": {"grid": [0, 1]},
                         "lico.ot.epsilon": {"loguniform": [0.05, 0.5]}},
               "algorithm": "random", "num_samples": 1,
               # These tests check the report of test metrics, not selection: hence the override.
               "metrics": {"test/acc": "max", "saliency/gradcam/overall": "max"}, "allow_test_selection": True},
    "resources": {"cpu": 1},
}


def run_sweep(spec: dict, root: Path, tmpdir: str, workdir: Path, timeout: float = 420):
    path = workdir / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = lico_tune(["run", str(path), "--storage", str(root), "--name", spec["name"]], tmpdir, timeout=timeout)
    return out.returncode, out.stdout


@pytest.fixture(scope="session")
def results_root(tmp_path_factory) -> Path:
    """A storage root with the experiment above (read-only for tests: copy it to damage it).
    LICO_TUNE_TEST_RESULTS=<dir> reuses a copy of an earlier one (<dir>/root, as this fixture
    leaves it) instead of sweeping again: for iterating on the tests, never in CI."""
    reuse = os.environ.get("LICO_TUNE_TEST_RESULTS")
    if reuse:
        dst = tmp_path_factory.mktemp("results")
        shutil.copytree(Path(reuse) / "root", dst / "root")
        shutil.copy2(Path(reuse) / "catalog_after_sweep.db", dst / "catalog_after_sweep.db")
        # The catalog keys rows by the root's path: re-key the copies to the new root.
        import sqlite3
        new = str(dst / "root")
        for db in (dst / "root" / "lico-tune.db", dst / "catalog_after_sweep.db"):
            with sqlite3.connect(db) as conn:
                old = conn.execute("SELECT root FROM lico_experiments LIMIT 1").fetchone()[0]
                conn.execute("UPDATE lico_experiments SET root = ?, path = replace(path, ?, ?)", (new, old, new))
                conn.execute("UPDATE lico_trials SET root = ?, path = replace(path, ?, ?), "
                             "checkpoint = replace(checkpoint, ?, ?), gallery = replace(gallery, ?, ?)",
                             (new, old, new, old, new, old, new))
        return dst / "root"
    root = tmp_path_factory.mktemp("results") / "root"
    work = tmp_path_factory.mktemp("specs")
    tmpdir = private_tmpdir()
    t0 = time.time()
    try:
        rc, out = run_sweep(ABLATION, root, tmpdir, work)
        assert rc == 1, f"the smoke sweep (with a broken arm) should exit 1, got {rc}:\n{out[-6000:]}"
        assert "12 trials, 8 finished, 4 errored" in out, out[-6000:]
    finally:
        left = kill_started([tmpdir])
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert not left, f"processes left running after the sweeps: {left}"
    # What the sweep's catalog callback wrote, before any test syncs the catalog.
    shutil.copy2(root / "lico-tune.db", root.parent / "catalog_after_sweep.db")
    (root.parent / "sweep_seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
    (root.parent / "sweep_output.txt").write_text(out)
    return root


@pytest.fixture
def damaged_root(results_root, tmp_path) -> tuple[Path, str, str]:
    """A copy of the ablation experiment with one trial's result.json cut off mid-line and another
    trial's checkpoints deleted: (root, truncated trial dir, checkpointless trial dir)."""
    root = tmp_path / "damaged"
    shutil.copytree(results_root / "ablation-smoke", root / "ablation-smoke")
    cut = sorted((root / "ablation-smoke").glob("trial_*_lico"))[0]
    bare = sorted((root / "ablation-smoke").glob("trial_*_ce"))[0]
    text = (cut / "result.json").read_text()
    (cut / "result.json").write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])
    for ckpt in bare.glob("checkpoint_*"):
        shutil.rmtree(ckpt)
    return root, cut.name, bare.name


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """One finished experiment (2 seeds, 1 epoch each): <root>/done, and its spec (read-only for
    tests: copy it to change it)."""
    from conftest import TINY_TRIAL
    work = tmp_path_factory.mktemp("nolose")
    spec = write_spec(work / "t.yaml", copy.deepcopy(TINY_TRIAL), name="t",
                      search={"space": {"train.seed": {"grid": [0, 1]}}, "max_concurrent": 1})
    root = work / "res"
    tmp = private_tmpdir()
    try:
        out = lico_tune(["run", str(spec), "--storage", str(root), "--name", "done"], tmp, timeout=300)
    finally:
        left = kill_started([tmp])
        shutil.rmtree(tmp, ignore_errors=True)
    assert out.returncode == 0, out.stdout[-4000:]
    assert not left
    exp = root / "done"
    assert len(json.loads((exp / SUMMARY_FILE).read_text())) == 2 and not (exp / LOCK_FILE).exists()
    return {"spec": spec, "root": root, "exp": exp, "work": work}
