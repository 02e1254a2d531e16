"""Ray Tune's on-disk layout -> plain records (dicts), tolerant of damage: the experiments under a
root, each with its trials.

    <root>/<experiment>/experiment_state-<time>.json   trial statuses, errors, last results (tune_state.py)
    <root>/<experiment>/lico_run.yaml                  lico-tune's plan: the spec, arms, metrics
    <root>/<experiment>/lico_driver.json               is its driver still running? (liveness.py)
    <root>/<experiment>/<trial dir>/result.json        one JSON object per reported epoch
                                   params.json         the trial's sampled config
                                   error.txt           why it failed (failed trials)
                                   checkpoint_*/       Tune checkpoints (the newest is the model)
                                   trial_spec.yaml     the resolved trial config (lico-tune)
                                   provenance.json     package version, git SHA, arm (lico-tune)
                                   gallery/            saliency overlays and curves (lico-tune)

A trial's status is Ray's, made true by the driver's state (`liveness.true_status`): a trial Ray
saved as RUNNING or PENDING when its driver was stopped (Ctrl-C, SIGTERM, SIGKILL) is 'interrupted'.
An unfinished trial directory that Tune's saved state does not know, in an experiment whose driver
is gone, is 'orphaned': its driver was killed before it saved that the trial had started, and
`lico-tune resume` runs that trial again under a new id (tune/generator.py).
One trial directory -> its record: trial_scan.py (damaged trials are kept with a warning, out of the
statistics); its reported rows and the values that cannot be measurements: reported.py. An
experiment whose files are of the wrong shape is kept with a warning and no trials.
"""
from __future__ import annotations

import hashlib

from ..layout import (CHECKPOINT_DIR_PREFIX, ERROR_FILE, GALLERY, RAY_DRIVER_DIR, RAY_TRIAL_FILES, RESULT_FILE,
                      RUN_FILE, TRIAL_SPEC, TUNER_FILE)
from ..storage import Storage, basename, join
from ..storage.safe_files import UnsafeFile
from .liveness import driver_state
from .trial_scan import load_yaml_or_none, pending_trial, scan_trial
from .tune_state import is_state_file, latest_state_name, read_state

STATUSES = ("finished", "running", "pending", "paused", "errored", "interrupted", "orphaned")


def is_experiment(entries) -> bool:
    names = {e.name for e in entries}
    return RUN_FILE in names or TUNER_FILE in names or any(is_state_file(n) for n in names)


def find_experiments(storage: Storage) -> list[str]:
    """Experiment directories under the root (or the root itself when it is one)."""
    top = storage.list(storage.root)
    if is_experiment(top):
        return [storage.root]
    found = []
    for e in top:
        if e.is_dir and not e.name.startswith("."):
            path = join(storage.root, e.name)
            if is_experiment(storage.list(path)):
                found.append(path)
    return found


def fingerprint(storage: Storage, path: str) -> str:
    """Changes whenever the experiment's files change (what `sync` compares with the catalog).
    Local: the experiment's entries and each trial's result/error/checkpoint entries.
    Cloud: the experiment's entries only (the state file is rewritten as trials progress)."""
    h = hashlib.sha1()
    for e in storage.list(path):
        h.update(f"{e.name}|{e.mtime}|{e.size}\n".encode())
        if storage.is_local and e.is_dir:
            for f in storage.list(join(path, e.name)):
                if f.name in (RESULT_FILE, ERROR_FILE, GALLERY, TRIAL_SPEC) or f.name.startswith(CHECKPOINT_DIR_PREFIX):
                    h.update(f"  {f.name}|{f.mtime}|{f.size}\n".encode())
    return h.hexdigest()


def scan_experiment(storage: Storage, path: str) -> tuple[dict, list[dict]]:
    """(experiment record, trial records) of one experiment directory. Files of the wrong shape
    (valid JSON/YAML, but not what Ray or lico-tune writes) give a warning and no trials, never a
    traceback."""
    try:
        return _scan_experiment(storage, path)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError, UnsafeFile) as exc:
        name = basename(path)
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        warning = f"{name}: {exc} The experiment is skipped until then." if isinstance(exc, UnsafeFile) else \
            (f"{name}: its files are damaged or not written by lico-tune/Ray ({why}); skipped. Restore them from "
             f"a copy or delete the experiment directory.")
        exp = {"experiment": name, "path": path, "spec": None, "metrics": {}, "arms": {}, "created": None,
               "smoke": False, "optuna_storage": None, "lico_tune_version": None, "git_sha": None,
               "state_file": None, "n_trials": 0, "n_planned": None, "run_state": None, "run_note": None,
               "status_counts": {}, "fingerprint": fingerprint(storage, path),
               "warnings": [warning]}
        return exp, []


def _scan_experiment(storage: Storage, path: str) -> tuple[dict, list[dict]]:
    entries = storage.list(path)
    name = basename(path)
    run = load_yaml_or_none(storage.read_text(join(path, RUN_FILE)), join(path, RUN_FILE)) or {}
    spec = run.get("spec") if isinstance(run, dict) else None
    declared = dict((spec or {}).get("search", {}).get("metrics") or {})
    state_name = latest_state_name(e.name for e in entries)
    state = read_state(storage, path, state_name)
    warnings = []
    if state_name and not state:
        warnings.append(f"{name}: {state_name} cannot be read; trial statuses are inferred from their files "
                            f"(restore it from a copy, or leave it: `lico-tune resume` needs it)")
    by_dir = {s["dir"]: tid for tid, s in state.items() if s.get("dir")}
    newest = max((e.mtime for e in entries), default=0.0)
    driver = driver_state(storage, path, newest)
    trials = []
    for e in entries:
        if not e.is_dir or e.name.startswith((".", CHECKPOINT_DIR_PREFIX)) or e.name == RAY_DRIVER_DIR:
            continue
        tdir = join(path, e.name)
        inner = storage.list(tdir)
        if not ({f.name for f in inner} & RAY_TRIAL_FILES) and e.name not in by_dir:
            continue
        tid = by_dir.get(e.name)
        trials.append(scan_trial(storage, tdir, inner, name, declared, state.get(tid) if tid else None,
                                 tid, driver=driver))
    # Trials Tune knows but whose directory was never written (pending ones).
    seen = {t["trial_id"] for t in trials}
    for tid, s in state.items():
        if tid not in seen:
            trials.append(pending_trial(name, tid, join(path, s.get("dir") or tid), s, driver))
    _one_per_seed(trials, set(state))
    if state and not driver.live:
        _orphans(trials, set(state))
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    exp = {"experiment": name, "path": path, "spec": spec, "metrics": declared,
           "arms": (run.get("arms") if isinstance(run, dict) else None) or {},
           "created": str(run.get("created")) if isinstance(run, dict) and run.get("created") else None,
           "smoke": bool(run.get("smoke")) if isinstance(run, dict) else False,
           "optuna_storage": run.get("optuna_storage") if isinstance(run, dict) else None,
           "lico_tune_version": run.get("lico_tune_version") if isinstance(run, dict) else None,
           "git_sha": run.get("git_sha") if isinstance(run, dict) else None,
           "state_file": state_name, "n_trials": len(trials), "status_counts": counts,
           "n_planned": run.get("n_trials") if isinstance(run, dict) and isinstance(run.get("n_trials"), int) else None,
           "run_state": driver.state, "run_note": driver.why,
           "fingerprint": fingerprint(storage, path), "warnings": warnings}
    return exp, trials


def _one_per_seed(trials: list[dict], in_state: set[str]) -> None:
    """Two finished trials of one configuration and seed are one run twice, not two samples: after a
    resume whose snapshot lacked a trial that had finished (tune/generator.py creates it again), its
    directory stays beside its replacement. The one Tune's state knows counts; the other is kept,
    named, and left out of the statistics."""
    first: dict[tuple, dict] = {}
    for t in sorted(trials, key=lambda t: t["trial_id"] not in in_state):
        if not t["usable"]:
            continue
        key = (t["arm"], t["dataset"], t["config_id"], t["seed"])
        if key in first:
            t["warnings"].append(f"the same configuration and seed as trial {first[key]['trial_id']} (run again "
                                 f"after a resume): one run counted once, so this one is left out of the statistics")
            t["usable"], t["damaged"] = False, True
        else:
            first[key] = t


def _orphans(trials: list[dict], in_state: set[str]) -> None:
    """Unfinished trials Tune's saved state does not know, their driver gone: 'orphaned', kept, named
    and left out of the statistics (a finished one is a complete run and stays: _one_per_seed)."""
    for t in trials:
        if t["trial_id"] not in in_state and t["status"] in ("interrupted", "running", "pending", "paused"):
            t["status"], t["usable"], t["damaged"] = "orphaned", False, True
            t["warnings"].append("not in the experiment's saved state: its driver was killed before saving that this "
                                 "trial had started, so `lico-tune resume` runs it again under a new id; this "
                                 "unfinished directory is kept and left out of the statistics")


def scan_root(root: str) -> tuple[list[dict], list[dict]]:
    """(experiment records, trial records) of every experiment under root."""
    storage = Storage(root)
    exps, trials = [], []
    for path in find_experiments(storage):
        exp, ts = scan_experiment(storage, path)
        exps.append(exp)
        trials += ts
    return exps, trials
