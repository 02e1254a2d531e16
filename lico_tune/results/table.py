"""Trial records -> one tidy table (a pandas DataFrame, one row per trial).

Columns: experiment, trial_id, arm, dataset, seed, status, error, n_epochs, damaged, usable,
warnings (damaged files), health (a tuple of the trial's HealthWarning values: MM inactive, OT not
converged or degenerate, a dead loss term, at chance), checkpoint, gallery, path, trial_dir, node and
host (Ray's node id and the host name the trial ran on, from its provenance.json; empty before it
started); then every searched parameter under its field path
('lico.ot.epsilon', 'train.seed', ...); then each metric's final value under its name ('test/acc',
'saliency/gradcam/overall', ...) and its best value over epochs as 'best:<name>'.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from ..keys import config_id, read_health_warnings
from ..storage import normalise_root
from .reported import metric_mode
from .scan import STATUSES, scan_root

BASE_COLUMNS = ["experiment", "trial_id", "arm", "dataset", "seed", "config_id", "status", "error", "n_epochs",
                "damaged", "usable", "warnings", "health", "checkpoint", "gallery", "path", "trial_dir", "node", "host"]
# Where a trial ran, from its provenance.json (tune/trainable.py): Ray's node id and the host name.
WHERE_RAN = {"node": "node_id", "host": "hostname"}


def _cell(v):
    """Parameter values as table cells: lists and dicts become their text."""
    return str(v) if isinstance(v, (list, dict, tuple)) else v


@dataclass(frozen=True)
class Notice:
    """A warning about the files of a results root: `text` as shown, `experiment` it is about (None:
    the root or the catalog), and `trial` (None: the experiment as a whole)."""
    text: str
    experiment: Optional[str] = None
    trial: Optional[str] = None

    def __str__(self) -> str:
        return self.text


@dataclass
class Results:
    """Everything read from one results root (or one experiment of it)."""
    root: str
    trials: pd.DataFrame
    experiments: pd.DataFrame
    params: dict[str, list[str]] = field(default_factory=dict)   # experiment -> searched parameters
    metrics: list[str] = field(default_factory=list)             # final-metric columns
    warnings: list[Notice] = field(default_factory=list)
    source: str = "storage"                                      # or the catalog's URL

    @property
    def empty(self) -> bool:
        return self.trials.empty

    @property
    def usable(self) -> pd.DataFrame:
        """Finished trials with intact results: what the statistics use."""
        return self.trials[self.trials["usable"]] if not self.trials.empty else self.trials

    @property
    def damaged(self) -> pd.DataFrame:
        return self.trials[self.trials["damaged"]] if not self.trials.empty else self.trials

    def experiment(self, name: str) -> "Results":
        if name not in set(self.experiments.get("experiment", [])):
            raise KeyError(f"no experiment '{name}' under {self.root}; there are: "
                           f"{', '.join(self.experiments.get('experiment', [])) or 'none'}")
        t = self.trials[self.trials["experiment"] == name]
        keep = self.params.get(name, [])
        metrics = [m for m in self.metrics if m in t.columns and t[m].notna().any()]
        drop = [p for p in self.all_params if p not in keep] + \
            [c for m in self.metrics if m not in metrics for c in (m, f"best:{m}")]
        t = t.drop(columns=[c for c in drop if c in t.columns]).reset_index(drop=True)
        return Results(self.root, t, self.experiments[self.experiments["experiment"] == name].reset_index(drop=True),
                       {name: keep}, metrics, [w for w in self.warnings if w.experiment == name],
                       self.source)

    @property
    def all_params(self) -> list[str]:
        return list(dict.fromkeys(p for ps in self.params.values() for p in ps))

    def declared_metrics(self, experiment: Optional[str] = None) -> dict[str, str]:
        """The spec's search.metrics (name -> mode), merged over experiments."""
        out: dict[str, str] = {}
        for _, e in self.experiments.iterrows():
            if experiment is None or e["experiment"] == experiment:
                out.update(e.get("metrics") or {})
        return out

    def mode(self, metric: str, experiment: Optional[str] = None) -> str:
        return metric_mode(metric, self.declared_metrics(experiment))


def build_results(root: str, experiments: list[dict], trials: list[dict], source: str = "storage") -> Results:
    """The tidy table from catalog or scan records."""
    params: dict[str, list[str]] = {}
    for t in trials:
        names = params.setdefault(t["experiment"], [])
        for k in t.get("params") or {}:
            if k not in names:
                names.append(k)
    metric_names: list[str] = []
    for t in trials:
        for k in t.get("final") or {}:
            if k not in metric_names:
                metric_names.append(k)
    metric_names = sorted(metric_names, key=_metric_order)

    rows = []
    for t in trials:
        row = {k: t.get(k) for k in BASE_COLUMNS}
        row["warnings"] = "; ".join(t.get("warnings") or [])
        row["health"] = tuple(read_health_warnings(t.get("health")))
        row["damaged"] = bool(t.get("damaged"))
        row["usable"] = bool(t.get("usable"))
        prov = t.get("provenance") if isinstance(t.get("provenance"), dict) else {}
        for col, key in WHERE_RAN.items():
            row[col] = prov.get(key) if isinstance(prov.get(key), str) else None
        if not row.get("config_id"):   # the catalog keeps no config_id column: the same hash of the params
            row["config_id"] = config_id({**(t.get("params") or {}),
                                          **({"arm": t["arm"]} if t.get("arm") not in (None, "-") else {})})
        for k, v in (t.get("params") or {}).items():
            row[k] = _cell(v)
        for k, v in (t.get("final") or {}).items():
            row[k] = v
        for k, v in (t.get("best") or {}).items():
            row[f"best:{k}"] = v
        rows.append(row)
    all_params = list(dict.fromkeys(p for ps in params.values() for p in ps))
    columns = BASE_COLUMNS + all_params + metric_names + [f"best:{m}" for m in metric_names]
    df = pd.DataFrame(rows, columns=columns)
    if not df.empty:
        df = df.sort_values(["experiment", "trial_id"], kind="stable").reset_index(drop=True)
    exp_cols = ["experiment", "path", "spec", "metrics", "arms", "created", "smoke", "n_trials", "n_planned",
                "run_state", "run_note", "status_counts",
                "state_file", "lico_tune_version", "git_sha", "optuna_storage", "warnings"]
    edf = pd.DataFrame([{k: e.get(k) for k in exp_cols} for e in experiments], columns=exp_cols)
    warnings = [Notice(w, e["experiment"]) for e in experiments for w in (e.get("warnings") or [])]
    for t in trials:
        for w in t.get("warnings") or []:
            warnings.append(Notice(f"{t['experiment']}/{t['trial_dir']}: {w}", t["experiment"], t["trial_dir"]))
    return Results(normalise_root(root), df, edf, params, metric_names, warnings, source)


def _metric_order(name: str) -> tuple:
    head = name.split("/")[0]
    return ({"test": 0, "saliency": 1, "train": 2}.get(head, 3), name)


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    return {s: int(counts.get(s, 0)) for s in STATUSES if counts.get(s)} | \
        {s: int(n) for s, n in counts.items() if s not in STATUSES}


def load_results(root: str, experiment: Optional[str] = None, db: Optional[str] = None,
                 use_catalog: bool = True, refresh: bool = True) -> Results:
    """Read a results root into a Results table.

    With use_catalog (default), the catalog database is brought up to date first (`sync`: only the
    experiments whose files changed are re-read) and then read; a root where no catalog can be
    written (read-only) is scanned directly. Trials' learning curves are not loaded (use
    `trial_record`)."""
    root = normalise_root(root)
    exps = trials = None
    source = "storage"
    notes: list[str] = []
    if use_catalog:
        exps, trials, source, notes = _from_catalog(root, db, refresh)
    if exps is None:
        exps, trials = scan_root(root)
        source = "storage"
    res = build_results(root, exps, trials, source)
    res.warnings[:0] = [Notice(n) for n in notes]
    return res.experiment(experiment) if experiment is not None else res


def _from_catalog(root: str, db: Optional[str], refresh: bool):
    """(experiments, trials, source, notes) from the catalog, or (None, None, ..) when it cannot be used:
    an unwritable root or database (then the files are read). A catalog that is not a database:
    in the user cache it is rebuilt; anywhere else it is left alone with a warning."""
    from pathlib import Path

    import sqlalchemy.exc

    from ..layout import cache_path
    from .catalog import Catalog, default_url
    for attempt in (1, 2):
        try:
            cat = Catalog(root, db)
            if refresh:
                cat.sync()
            return cat.experiments(), cat.trials(), cat.url, []
        except (sqlalchemy.exc.OperationalError, OSError, sqlalchemy.exc.ArgumentError):
            return None, None, "storage", []
        except sqlalchemy.exc.DatabaseError:
            url = db or default_url(root)
            f = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
            if attempt == 1 and f is not None and cache_path("catalog") in f.parents:
                f.unlink(missing_ok=True)            # our own cache: rebuild it from the files
                continue
            return None, None, "storage", [
                f"the catalog {url} is not a lico-tune database (damaged, or another file of that name); "
                f"the results were read from the files instead. Delete it and run `lico-tune index` to rebuild it."]
    return None, None, "storage", []
