"""Ray Tune's on-disk layout -> plain records (dicts), tolerant of damage.

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
A damaged trial (a result.json cut off mid-write, empty or unreadable, a finished trial without a
checkpoint) is kept with a warning; only trials that finished with intact results enter the
statistics (`usable`). A reported value that cannot be a measurement (infinite; NaN at a finished
trial's end, where every key is computed; an accuracy outside 0-100%) is left out of the trial's
metrics with a warning naming the key (`implausible_values`), so no mean or best configuration
rests on it.
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Optional

from ..errors import SpecError, error_reason
from ..keys import ACCURACY_RANGE, HEALTH_WARNINGS, config_id, is_accuracy, read_health_warnings
from ..layout import (CHECKPOINT_DIR_PREFIX, ERROR_FILE, GALLERY, PARAMS_FILE, PROVENANCE, RAY_DRIVER_DIR,
                      RAY_TRIAL_FILES, RESULT_FILE, RUN_FILE, TRIAL_SPEC, TUNER_FILE)
from ..spec.safe_yaml import YamlLimitError, load_text
from ..storage import Storage, basename, join
from ..storage.safe_files import UnsafeFile, parse_json
from .liveness import DriverState, driver_state, true_status
from .tune_state import TUNE_STATUS, is_state_file, latest_state_name, read_state

STATUSES = ("finished", "running", "pending", "paused", "errored", "interrupted")
_TRIAL_ID = re.compile(r"([0-9a-f]{5}_\d{5})")
_MIN_PATTERNS = re.compile(r"(loss|^train/(ce|mm|ot)$|deletion|seconds|time)")


def metric_mode(name: str, declared: Optional[dict] = None) -> str:
    """'max' or 'min': the spec's search.metrics when it names the metric, else by name
    (losses, deletion AUC and times are minimised; accuracy and the other saliency scores maximised)."""
    if declared and name in declared:
        return declared[name]
    return "min" if _MIN_PATTERNS.search(name) else "max"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def implausible_values(rows: list[dict], finished: bool) -> dict[str, str]:
    """{key: why} for the values of a trial's reported rows that cannot be measurements: infinite
    ones, accuracies outside ACCURACY_RANGE, and NaN in a finished trial's last row (earlier rows
    are NaN-padded by design until a key is computed). The first such row of each key is named."""
    bad: dict[str, str] = {}
    lo, hi = ACCURACY_RANGE
    for i, row in enumerate(rows):
        epoch = row.get("epoch", row.get("training_iteration", i + 1))
        for k, v in row.items():
            if "/" not in k or not isinstance(v, (int, float)) or isinstance(v, bool) or k in bad:
                continue
            if math.isinf(v):
                bad[k] = f"{k} is {v} at epoch {epoch}"
            elif math.isnan(v) and finished and i == len(rows) - 1:
                bad[k] = f"{k} is NaN at the end (epoch {epoch})"
            elif is_accuracy(k) and not math.isnan(v) and not lo <= v <= hi:
                bad[k] = f"{k} is {v:g} at epoch {epoch}, outside {lo:g}-{hi:g}%"
    return bad


def epoch_metrics(row: dict) -> dict:
    """The numeric metrics of one reported result ('test/acc', 'train/ce', ...) and its epoch."""
    out = {k: v for k, v in row.items() if "/" in k and _number(v)}
    epoch = row.get("epoch", row.get("training_iteration"))
    if _number(epoch):
        out["epoch"] = epoch
    return out


def once_per_epoch(history: list[dict]) -> list[dict]:
    """The history without re-reports: a trial resumed from its final checkpoint reports its recorded
    final metrics again (tune/trainable.py), so result.json repeats that epoch's row; a row equal to
    the one before it in every metric is dropped (a retrained epoch differs, in its timings at least)."""
    out: list[dict] = []
    for m in history:
        if not (out and m == out[-1]):
            out.append(m)
    return out


def read_results(text: str) -> tuple[list[dict], Optional[str]]:
    """Rows of result.json and a warning when a line cannot be parsed (a cut-off write)."""
    rows, problem = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
            if not isinstance(row, dict):
                raise ValueError("not an object")
            rows.append(row)
        except ValueError:
            where = "its last line" if i == len(lines) - 1 else f"line {i + 1}"
            problem = (f"{RESULT_FILE} is truncated or corrupt ({where} is not valid JSON; "
                       f"{len(rows)} epoch(s) read)")
            break
    return rows, problem


def read_or_skip(storage: Storage, path: str, bad: list[str]) -> Optional[str]:
    """A file of a whole root's scan: its text, or None when it is missing, or when it is not a
    regular file, a link out of the root or too large (safe_files.UnsafeFile: its message is
    appended to `bad`, and the trial holding it is left out of the statistics with that warning)."""
    try:
        return storage.read_text(path)
    except UnsafeFile as exc:
        bad.append(f"{exc} Left out of the statistics until then.")
        return None


def _load_json(storage: Storage, path: str, bad: list[str]) -> Optional[Any]:
    text = read_or_skip(storage, path, bad)
    if text is None:
        return None
    try:
        return parse_json(text)
    except ValueError:
        return None


def load_yaml_or_none(text: Optional[str], source: str) -> Optional[Any]:
    """The YAML document in text, or None when there is none or it does not parse (damaged file).
    A file beyond safe_yaml's limits (a 'billion laughs', deep nesting) raises YamlLimitError."""
    if text is None:
        return None
    try:
        return load_text(text, source)
    except YamlLimitError:
        raise
    except SpecError:
        return None


# ----------------------------------------------------------------------------- experiments


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
            trials.append(_empty_trial(name, tid, join(path, s.get("dir") or tid), s, driver))
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


# ----------------------------------------------------------------------------- trials


def _empty_trial(experiment: str, tid: str, path: str, s: dict, driver: DriverState) -> dict:
    return {"experiment": experiment, "trial_id": tid, "trial_dir": basename(path), "path": path,
            "arm": (s.get("config") or {}).get("arm") or "-",
            "dataset": (s.get("config") or {}).get("data.name"), "seed": (s.get("config") or {}).get("train.seed"),
            "status": true_status(TUNE_STATUS.get(s.get("status"), "pending"), driver), "error": None,
            "error_detail": None,
            "params": {k: v for k, v in (s.get("config") or {}).items() if k != "arm"},
            "final": {}, "best": {}, "n_epochs": 0, "history": [], "checkpoint": None, "gallery": None,
            "spec": None, "provenance": None, "warnings": [], "damaged": False, "usable": False}


def scan_trial(storage: Storage, tdir: str, inner, experiment: str, declared: dict,
               state: Optional[dict], tid: Optional[str], driver: Optional[DriverState] = None,
               status: Optional[str] = None) -> dict:
    """One trial directory -> a record. `status` (from a live Tune callback) wins over the
    experiment state and over what the files suggest; otherwise Ray's status is made true by the
    driver's state (no driver given: the driver is taken to be gone)."""
    names = {f.name: f for f in inner}
    warnings: list[str] = []
    refused: list[str] = []               # files safe_files refused (a FIFO, a device...): the trial is left out
    params = _load_json(storage, join(tdir, PARAMS_FILE), refused) if PARAMS_FILE in names else None
    if PARAMS_FILE in names and not isinstance(params, dict) and not refused:
        warnings.append(f"{PARAMS_FILE} cannot be read")
    if not isinstance(params, dict):
        params = dict((state or {}).get("config") or {})
    rows, history, problem, result_text = _read_results(storage, tdir, names, state, warnings)
    error_text = read_or_skip(storage, join(tdir, ERROR_FILE), refused) if ERROR_FILE in names else None
    spec_text = read_or_skip(storage, join(tdir, TRIAL_SPEC), refused) if TRIAL_SPEC in names else None
    spec = load_yaml_or_none(spec_text, join(tdir, TRIAL_SPEC)) if spec_text else None
    spec = spec if isinstance(spec, dict) else {}
    prov = _load_json(storage, join(tdir, PROVENANCE), refused) if PROVENANCE in names else None
    warnings += refused
    last_row = rows[-1] if rows else {}

    if tid is None:
        tid = last_row.get("trial_id") or (prov or {}).get("trial_id")
        if not tid:
            m = _TRIAL_ID.search(basename(tdir))
            tid = m.group(1) if m else basename(tdir)
    if status is None:
        status = _status_from_files(state, error_text, history, spec, driver)

    if status not in ("running", "pending", "errored") and result_text is not None and not rows and not problem:
        warnings.append(f"{RESULT_FILE} is empty ({len(result_text.encode())} bytes, no epoch reported): no metrics, "
                        f"so it is left out of the statistics")
    bad = implausible_values(rows, status == "finished")
    for k, why in bad.items():
        warnings.append(f"{why}: not a measurement, left out of its metrics and the statistics")
    history = [{k: v for k, v in m.items() if k not in bad} for m in history]
    checkpoint, gallery = _checkpoint_and_gallery(storage, tdir, names, status, warnings)
    final, best, n_epochs = _final_and_best(history, declared)

    arm = last_row.get("arm") or params.get("arm") or (prov or {}).get("arm") or "-"
    dataset = last_row.get("dataset") or params.get("data.name") or spec.get("data", {}).get("name")
    seed = spec.get("train", {}).get("seed", params.get("train.seed"))   # the trained seed (repeats: base + i)
    cid = last_row.get("config_id") or (prov or {}).get("config_id") or config_id(params)
    return {
        "experiment": experiment, "trial_id": tid, "trial_dir": basename(tdir), "path": tdir,
        "arm": arm, "dataset": dataset, "seed": seed, "config_id": cid, "status": status,
        "error": error_reason(error_text) if error_text else None, "error_detail": error_text[-4000:] if error_text else None,
        "params": {k: v for k, v in params.items() if k != "arm"},
        "final": final, "best": best, "n_epochs": n_epochs, "history": history,
        "checkpoint": checkpoint, "gallery": gallery, "spec": spec_text,
        "provenance": prov if isinstance(prov, dict) else None,
        "warnings": warnings, "damaged": bool(warnings), "health": _health_warnings(rows),
        "usable": status == "finished" and problem is None and bool(final) and not refused}


def _read_results(storage: Storage, tdir: str, names: dict, state: Optional[dict],
                  warnings: list[str]) -> tuple[list[dict], list[dict], Optional[str], Optional[str]]:
    """(result.json's rows, their epoch metrics, what is wrong with them or None, the file's text)."""
    rows, problem, result_text = [], None, None
    if RESULT_FILE in names:
        try:
            result_text = storage.read_text(join(tdir, RESULT_FILE))
        except UnsafeFile as exc:
            problem = str(exc).rstrip(".")
        rows, problem = read_results(result_text or "") if problem is None else ([], problem)
        if result_text is None and problem is None:
            problem = f"{RESULT_FILE} cannot be read"
        if problem:
            warnings.append(problem + "; its final metrics are unknown, so it is left out of the statistics")
    history = once_per_epoch([m for m in (epoch_metrics(r) for r in rows) if m])
    if state and state.get("last_epoch") and history and not problem:
        if history[-1].get("epoch", 0) < state["last_epoch"]:
            problem = (f"{RESULT_FILE} holds {history[-1].get('epoch')} epoch(s) but Tune recorded "
                       f"{state['last_epoch']}")
            warnings.append(problem + "; left out of the statistics")
    return rows, history, problem, result_text


def _status_from_files(state: Optional[dict], error_text: Optional[str], history: list[dict], spec: dict,
                       driver: Optional[DriverState]) -> str:
    """Ray's recorded status, else what the files suggest; made true by the driver's state."""
    if state and state.get("status") in TUNE_STATUS:
        status = TUNE_STATUS[state["status"]]
    elif error_text:
        status = "errored"
    elif history and spec.get("train", {}).get("epochs") and history[-1].get("epoch", 0) >= spec["train"]["epochs"]:
        status = "finished"
    else:
        status = "running"
    return true_status(status, driver or DriverState(False, "interrupted", "no driver"))


def _checkpoint_and_gallery(storage: Storage, tdir: str, names: dict, status: str,
                            warnings: list[str]) -> tuple[Optional[str], Optional[str]]:
    """The newest checkpoint directory and the saliency gallery (beside it or inside it), or None."""
    ckpts = sorted(n for n, f in names.items() if f.is_dir and n.startswith(CHECKPOINT_DIR_PREFIX))
    checkpoint = join(tdir, ckpts[-1]) if ckpts else None
    if status == "finished" and not ckpts:
        warnings.append(f"no {CHECKPOINT_DIR_PREFIX}* directory: the model cannot be reloaded (its metrics are kept)")
    if status == "finished" and RESULT_FILE not in names:
        warnings.append(f"no {RESULT_FILE}: no metrics")
    gallery = None
    if GALLERY in names and names[GALLERY].is_dir:
        gallery = join(tdir, GALLERY)
    elif checkpoint and any(f.name == GALLERY for f in storage.list(checkpoint)):
        gallery = join(checkpoint, GALLERY)
    return checkpoint, gallery


def _final_and_best(history: list[dict], declared: dict) -> tuple[dict[str, float], dict[str, float], int]:
    """(each metric's last reported value, its best by its mode, the number of epochs)."""
    final: dict[str, float] = {}
    for m in history:
        final.update(m)
    best: dict[str, float] = {}
    for m in history:
        for k, v in m.items():
            if k == "epoch":
                continue
            if k not in best or (v > best[k] if metric_mode(k, declared) == "max" else v < best[k]):
                best[k] = v
    n_epochs = int(final.pop("epoch", len(history)) or 0)
    return final, best, n_epochs


def _health_warnings(rows: list[dict]) -> list[str]:
    """The trial's health warnings (lico_tune.train.health: 'MM inactive: ...', 'OT not converged: ...'),
    each once, from the `health/warnings` text of its reported epochs; as text, the record's JSON form
    (the catalog keeps it); the results table reads them into HealthWarning values."""
    found: list[str] = []
    for row in rows:
        for w in map(str, read_health_warnings(row.get(HEALTH_WARNINGS))):
            if w not in found:
                found.append(w)
    return found


def scan_root(root: str) -> tuple[list[dict], list[dict]]:
    """(experiment records, trial records) of every experiment under root."""
    storage = Storage(root)
    exps, trials = [], []
    for path in find_experiments(storage):
        exp, ts = scan_experiment(storage, path)
        exps.append(exp)
        trials += ts
    return exps, trials
