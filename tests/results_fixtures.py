"""Results roots for the tests of results, dashboard, rerun, figures, resume and trust, made by
REAL sweeps once per test run (`lico-tune run` in a subprocess with a private RAY_TMPDIR; every
process it started is stopped afterwards by PID). `make test` runs two pytest-xdist workers: the
first that needs a sweep makes it (made_once), and each worker's tests read their own copy.

`results_root` holds one experiment, ablation-smoke: the quick start's design in miniature. Arms
ce, lico and broken x datasets digits and fashion_mnist x seeds 0 and 1, with lico.ot.epsilon drawn
at random per trial (a searched numeric parameter) = 12 trials of 2 epochs of 3 steps (tiny CNN +
MiniLM; Grad-CAM saliency on 8 fixed test images, a gallery of 3). The broken arm diverges at its
first step, so its 4 trials error (quickly: no text encoder).
lico_tune.tune.tuner.build_tuner registers the catalog callback, so the catalog the sweep leaves behind at the
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
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Callable

import pytest
import yaml
from filelock import FileLock
from ray_helpers import lico_tune_cleanly, write_spec

from lico_tune.layout import LOCK_FILE, SUMMARY_FILE

BASE = {
    "data": {"name": "digits", "train_subset": 512, "test_subset": 256},
    "model": {"backbone": "tiny_cnn"},
    "text": {"encoder": "hf", "model": "minilm", "n_ctx": 4, "features": "eot"},
    # OT to all K class points: with one (eot) point per class and own_class, epsilon could not act
    # (plan/inert.py refuses a search over it).
    "lico": {"alpha": 1.0, "beta": 1.0, "ot": {"target": "all_classes"}},
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


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The directory that `make(dir)` fills, made once per test run: under `make test`'s
    pytest-xdist workers, by the first worker that asks while the others wait on a file lock (the
    xdist recipe for session fixtures); a failed `make` is retried by the next worker that asks."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent                       # pytest-N/, shared by this run's workers
    made = base / f"made-{name}"
    with FileLock(f"{made}.lock"):
        if not (made / ".complete").exists():
            shutil.rmtree(made, ignore_errors=True)
            made.mkdir()
            make(made)
            (made / ".complete").touch()
    return made


def private_copy(made: Path, tmp_path_factory, name: str) -> Path:
    """A copy of a made directory for this worker's tests (so no two workers' tests meet in one
    experiment), with its catalogs re-keyed to the copy (the catalog keys rows by their paths)."""
    dst = tmp_path_factory.mktemp(name)
    shutil.copytree(made, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete"))
    new = str(dst)
    for db in dst.rglob("*.db"):
        with closing(sqlite3.connect(db)) as conn, conn:   # closed here: no -shm/-wal left to vanish later
            row = conn.execute("SELECT root FROM lico_experiments LIMIT 1").fetchone()
            if row is None:
                continue
            old = str(Path(row[0]).parent)     # where it was made (the storage root lies in made/)
            conn.execute("UPDATE lico_experiments SET root = replace(root, ?, ?), path = replace(path, ?, ?)",
                         (old, new, old, new))
            conn.execute("UPDATE lico_trials SET root = replace(root, ?, ?), path = replace(path, ?, ?), "
                         "checkpoint = replace(checkpoint, ?, ?), gallery = replace(gallery, ?, ?)",
                         (old, new) * 4)
    return dst


def sweep_ablation(made: Path) -> None:
    """The ablation experiment at made/root, and what its sweep left beside it."""
    root, spec = made / "root", made / f"{ABLATION['name']}.yaml"
    spec.write_text(yaml.safe_dump(ABLATION, sort_keys=False))
    t0 = time.time()
    done = lico_tune_cleanly(["run", str(spec), "--storage", str(root), "--name", ABLATION["name"]], timeout=420)
    rc, out = done.returncode, done.stdout
    assert rc == 1, f"the smoke sweep (with a broken arm) should exit 1, got {rc}:\n{out[-6000:]}"
    assert "12 trials, 8 finished, 4 errored" in out, out[-6000:]
    # The plan's printout names the arms where the searched epsilon cannot act (plan/inert.py).
    assert "note: lico.ot.epsilon cannot act in arms ce, broken: lico.alpha and lico.beta are 0" in out, out[:3000]
    # What the sweep's catalog callback wrote, before any test syncs the catalog.
    shutil.copy2(root / "lico-tune.db", made / "catalog_after_sweep.db")
    (made / "sweep_seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
    (made / "sweep_output.txt").write_text(out)


@pytest.fixture(scope="session")
def results_root(tmp_path_factory) -> Path:
    """A storage root with the experiment above (read-only for tests: copy it to damage it), this
    worker's copy of the run's one sweep. LICO_TUNE_TEST_RESULTS=<dir> copies an earlier one (a
    made-results/ directory this fixture left) instead of sweeping again: for iterating on the
    tests, never in CI."""
    reuse = os.environ.get("LICO_TUNE_TEST_RESULTS")
    made = Path(reuse) if reuse else made_once(tmp_path_factory, "results", sweep_ablation)
    return private_copy(made, tmp_path_factory, "results") / "root"


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


def run_finished(made: Path) -> None:
    from conftest import TINY_TRIAL
    spec = write_spec(made / "t.yaml", copy.deepcopy(TINY_TRIAL), name="t",
                      search={"space": {"train.seed": {"grid": [0, 1]}}, "max_concurrent": 1})
    out = lico_tune_cleanly(["run", str(spec), "--storage", str(made / "res"), "--name", "done"])
    assert out.returncode == 0, out.stdout[-4000:]


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """One finished experiment (2 seeds, 1 epoch each): <root>/done, and its spec (read-only for
    tests: copy it to change it); this worker's copy of the run's one."""
    work = private_copy(made_once(tmp_path_factory, "finished", run_finished), tmp_path_factory, "nolose")
    root, exp = work / "res", work / "res" / "done"
    assert len(json.loads((exp / SUMMARY_FILE).read_text())) == 2 and not (exp / LOCK_FILE).exists()
    return {"spec": work / "t.yaml", "root": root, "exp": exp, "work": work}
