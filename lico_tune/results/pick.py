"""Picking from a results root without naming things: the newest experiment (`--experiment latest`)
and the best finished trial of an arm (`lico-tune explain EXPERIMENT_DIR --arm lico`).

"Newest" is the experiment's creation time as `lico-tune run` recorded it in its RUN_FILE
(`created`), ties broken by name; experiments without one (Ray Tune's own) count as oldest.
"Best" is the best final value of the spec's first search metric (its declared mode) among the
finished trials with intact results.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from ..errors import UnreadableInput
from ..layout import CHECKPOINT_FILE, RUN_FILE
from ..storage import Storage, basename, join
from .reported import metric_mode
from .scan import find_experiments, is_experiment, scan_experiment
from .table import Results, build_results
from .trial_scan import load_yaml_or_none

LATEST = "latest"


def latest_experiment(res: Results) -> Optional[str]:
    """The newest experiment of a loaded results root (None when it holds none)."""
    e = res.experiments
    if e.empty:
        return None
    keys = [(str(c) if isinstance(c, str) and c else "", n) for c, n in zip(e["created"], e["experiment"])]
    return max(keys)[1]


def _created(storage: Storage, path: str) -> str:
    run = load_yaml_or_none(storage.read_text(join(path, RUN_FILE)), join(path, RUN_FILE))
    return str(run.get("created") or "") if isinstance(run, dict) else ""


def experiment_dir(path: str) -> str:
    """`path` itself when it is an experiment directory, else the newest experiment under it (a
    results root). Raises FileNotFoundError when there is none."""
    storage = Storage(path)
    if not storage.exists():
        raise UnreadableInput(f"{path}: no such directory. Pass an experiment directory "
                                f"(<storage>/<experiment>, as `lico-tune run` printed) or a results root.")
    if is_experiment(storage.list(storage.root)):
        return storage.root
    found = find_experiments(storage)
    if not found:
        raise UnreadableInput(f"{path} holds no experiment (no <experiment>/{RUN_FILE}); run "
                                f"`lico-tune run SPEC --storage {path}` first.")
    return max(found, key=lambda p: (_created(storage, p), basename(p)))


@dataclass
class BestTrial:
    experiment: str
    trial_dir: str
    checkpoint: str          # the checkpoint file of its newest Tune checkpoint
    metric: str
    mode: str
    value: float
    n_candidates: int
    row: dict

    def reason(self) -> str:
        word = "highest" if self.mode == "max" else "lowest"
        return (f"best {self.row['arm']} trial of {self.experiment}: {self.trial_dir} (dataset "
                f"{self.row['dataset']}, seed {self.row['seed']}), {self.metric} {self.value:.4g}, the {word} "
                f"of {self.n_candidates} finished {self.row['arm']} trial(s) with it (the spec's first search "
                f"metric, mode {self.mode})")


def best_trial(path: str, arm: Optional[str] = None, dataset: Optional[str] = None,
               metric: Optional[str] = None) -> BestTrial:
    """The best finished trial of `arm` (every arm when None) of the experiment at `path` (or the
    newest experiment under a results root). Raises FileNotFoundError / KeyError with the fix."""
    exp_path = experiment_dir(path)
    root = exp_path.rsplit("/", 1)[0]
    storage = Storage(root)
    exp, trials = scan_experiment(storage, exp_path)
    res = build_results(root, [exp], trials)
    declared = exp.get("metrics") or {}
    metric = metric or next(iter(declared), "test/acc")
    mode = metric_mode(metric, declared)
    t = res.usable
    where = f"{exp['experiment']}"
    if arm is not None:
        arms = sorted(set(res.trials["arm"])) if not res.trials.empty else []
        if arm not in arms:
            raise KeyError(f"{where}: no arm '{arm}'; its arms: {', '.join(map(str, arms)) or 'none'}. "
                           f"Pass one of them to --arm.")
        t = t[t["arm"] == arm]
    if dataset is not None:
        t = t[t["dataset"] == dataset]
    if metric not in t.columns:
        t = t.iloc[0:0]
    t = t[pd.to_numeric(t[metric], errors="coerce").notna()] if not t.empty else t
    t = t[t["checkpoint"].notna()] if not t.empty else t
    if t.empty:
        what = " ".join(x for x in (f"arm {arm}" if arm else "", f"dataset {dataset}" if dataset else "") if x)
        raise KeyError(f"{where}: no finished trial{' of ' + what if what else ''} with {metric} and a checkpoint "
                       f"yet (`lico-tune report {root} --experiment {exp['experiment']}` lists the trials).")
    values = t[metric].astype(float)
    best = values.idxmax() if mode == "max" else values.idxmin()   # first of ties (trials sorted by id)
    row = t.loc[best].to_dict()
    value = float(values.loc[best])
    return BestTrial(exp["experiment"], row["trial_dir"], join(row["checkpoint"], CHECKPOINT_FILE), metric, mode,
                     value, len(t), row)


__all__ = ["LATEST", "BestTrial", "best_trial", "experiment_dir", "latest_experiment"]
