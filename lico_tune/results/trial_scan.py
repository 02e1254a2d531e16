"""One trial directory -> a plain record (a dict), tolerant of damage.

A damaged trial (a result.json cut off mid-write, empty or unreadable, a finished trial without a
checkpoint, a file safe_files refuses) is kept with a warning; only trials that finished with
intact results enter the statistics (`usable`). Its reported rows are read by reported.py; its
status is Ray's, made true by the driver's state (liveness.true_status).
"""
from __future__ import annotations

import re
from typing import Any, Optional

from ..errors import SpecError, error_reason
from ..keys import HEALTH_WARNINGS, config_id, read_health_warnings
from ..layout import CHECKPOINT_DIR_PREFIX, ERROR_FILE, GALLERY, PARAMS_FILE, PROVENANCE, RESULT_FILE, TRIAL_SPEC
from ..spec.safe_yaml import YamlLimitError, load_text
from ..storage import Storage, basename, join
from ..storage.safe_files import UnsafeFile, parse_json
from .liveness import DriverState, true_status
from .reported import epoch_metrics, implausible_values, metric_mode, once_per_epoch, read_results
from .tune_state import TUNE_STATUS

_TRIAL_ID = re.compile(r"([0-9a-f]{5}_\d{5})")


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


def pending_trial(experiment: str, tid: str, path: str, s: dict, driver: DriverState) -> dict:
    """The record of a trial Tune knows (`s`: its entry in the experiment state) but whose directory
    was never written (a pending one)."""
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
