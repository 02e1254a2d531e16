"""The names of every file and folder lico-tune writes or reads, in one place.

Every writer and every reader imports its names from here; the strings are the on-disk format
(experiments written by earlier versions use the same names, so do not rename them).

    <storage root>/
      lico-tune.db                       CATALOG_FILE: the results catalog (local roots)
      <experiment>/
        lico_run.yaml                    RUN_FILE: the plan; what `lico-tune resume` needs
        lico_checksums.json              MANIFEST_FILE: the signed list of the files resume unpickles (lico_tune/trust)
        summary.json                     SUMMARY_FILE: the end-of-run summary's rows
        lico_driver.json                 DRIVER_FILE: the driver's PID, host, heartbeat, outcome
        lico_driver.lock                 LOCK_FILE: held while a driver runs it (one driver at a time)
        optuna.db                        OPTUNA_FILE: the Optuna study (search.algorithm optuna)
        experiment_state-<time>.json     written by Ray Tune (see results/tune_state.py)
        <trial dir>/                     trial_<id>[_<arm>], named by TRIAL_DIR_PREFIX
          result.json progress.csv params.json error.txt      written by Ray Tune (RAY_TRIAL_FILES)
          checkpoint_<n>/                Tune checkpoints (CHECKPOINT_DIR_PREFIX) holding
            checkpoint.pt                CHECKPOINT_FILE: model, optimiser, history
            trial_spec.yaml provenance.json train.log
          trial_spec.yaml                TRIAL_SPEC: the resolved trial config
          provenance.json                PROVENANCE: package version, git SHA, arm, host
          train.log                      TRAIN_LOG: the trial's training log
          metrics.json                   METRICS_FILE: final metrics (also in `lico-tune train` runs)
          gallery/                       GALLERY: saliency overlays and curves

`lico-tune train --out DIR` writes checkpoint.pt, metrics.json and gallery/ into DIR; without
--out, DIR is runs/<spec name>_<date>_<time> (RUNS_DIR, stamped()), like experiment names.
"""
from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Optional

# ----------------------------------------------------------------------------- storage root
CATALOG_FILE = "lico-tune.db"

# ----------------------------------------------------------------------------- experiment
RUN_FILE = "lico_run.yaml"
SUMMARY_FILE = "summary.json"
DRIVER_FILE = "lico_driver.json"            # is the experiment's driver still running? (results/liveness.py)
LOCK_FILE = "lico_driver.lock"              # one driver per experiment at a time (lock.py)
OPTUNA_FILE = "optuna.db"
TRIAL_DIR_PREFIX = "trial_"
RAY_DRIVER_DIR = "driver_artifacts"         # Ray's, not a trial
TUNER_FILE = "tuner.pkl"                    # Ray's pickled Tuner (present once Tune started)
MANIFEST_FILE = "lico_checksums.json"       # signed SHA-256 of what resume loads (lico_tune/trust), checked before resume

# ----------------------------------------------------------------------------- trial
TRIAL_SPEC = "trial_spec.yaml"
PROVENANCE = "provenance.json"
TRAIN_LOG = "train.log"
METRICS_FILE = "metrics.json"
GALLERY = "gallery"
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_DIR_PREFIX = "checkpoint_"       # Ray Tune's checkpoint_<n> folders
RESULT_FILE = "result.json"                 # Ray Tune's per-epoch results, one JSON per line
PROGRESS_FILE = "progress.csv"
PARAMS_FILE = "params.json"
ERROR_FILE = "error.txt"
RAY_ERROR_PICKLE = "error.pkl"              # Ray's pickled trial error: unpickled for the result grid (lico_tune/trust)
RAY_TRIAL_FILES = frozenset({RESULT_FILE, PARAMS_FILE, PROGRESS_FILE, ERROR_FILE, "params.pkl"})

# ----------------------------------------------------------------------------- run names
RUNS_DIR = Path("runs")                     # `lico-tune train` without --out writes RUNS_DIR/<stamped name>
STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"          # <name>_<date>_<time>: experiments and train runs; sorts by time
_STAMP_RE = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"


def stamped(name: str, now: Optional[_dt.datetime] = None) -> str:
    """'quickstart' -> 'quickstart_2026-12-01_04-30-00' (a new name for every run)."""
    return f"{name}_{(now or _dt.datetime.now()).strftime(STAMP_FORMAT)}"


def newest_stamped(parent: Path, name: str) -> Optional[Path]:
    """The newest directory parent/<name>_<date>_<time> (or the unstamped parent/<name> of
    earlier versions, taken as the oldest); None when there is none."""
    pattern = re.compile(re.escape(name) + "_" + _STAMP_RE)
    found = sorted(p for p in parent.glob(f"{name}_*") if p.is_dir() and pattern.fullmatch(p.name))
    if found:
        return found[-1]
    return parent / name if (parent / name).is_dir() else None


# ----------------------------------------------------------------------------- default places
DEFAULT_STORAGE = "~/lico-tune-results"     # the results root of a spec, the CLI and the dashboard
KEY_ENV = "LICO_TUNE_KEY_FILE"              # the key that signs experiments (lico_tune/trust); never in a storage root
DEFAULT_KEY_FILE = "~/.config/lico-tune/manifest.key"
CACHE_DIR = Path("~/.cache/lico-tune")      # datasets, checksums, SQLite files of cloud roots (not in a bucket)


def cache_path(*parts: str) -> Path:
    return CACHE_DIR.expanduser().joinpath(*parts)


def driver_study_file(experiment: str) -> Path:
    """The SQLite file of the Optuna study of an experiment on cloud storage, kept on the driver
    (SQLite cannot live in a bucket; a copy, OPTUNA_FILE, goes into the experiment at each save)."""
    return cache_path("optuna", f"{experiment}.db")


def trial_dirname(trial_id: str, arm: str | None) -> str:
    """The directory of one trial inside its experiment: trial_<id> or trial_<id>_<arm>."""
    return f"{TRIAL_DIR_PREFIX}{trial_id}" + (f"_{arm}" if arm else "")


def scratch_prefix(trial_id: str) -> str:
    """A trial's scratch directory in the worker's temp folder: <tmp>/lico-<trial id>-<random>."""
    return f"lico-{trial_id}-"
