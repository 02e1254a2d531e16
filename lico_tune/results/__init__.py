"""Results: Ray Tune storage -> one tidy table, a catalog database, statistics over seeds, reports.

Core: pandas, scipy, sqlalchemy (optuna lazily for fANOVA importance); never ray or streamlit.
The Tune callback that keeps the catalog current lives on the Ray side, in
`lico_tune.tune.callbacks`; Ray's experiment state is read by `tune_state.py` without ray.

    res = load_results("~/lico-tune-results")          # Results: .trials (DataFrame), .warnings
    reps = build_report(res, experiment="quickstart")   # ablation table, paired tests, best configs
    print(render(reps, "md"))
"""
from .catalog import Catalog, default_url
from .render import render
from .report import ExperimentReport, build_report, default_metrics, experiment_report
from .reported import metric_mode
from .scan import scan_experiment, scan_root
from .stats import (aggregate, best_configs, bootstrap_interval, correct, holm, paired_test, paired_vs_baseline,
                    param_importance, pareto_mask, t_interval)
from ..storage import Storage, is_uri, normalise_root
from .table import Results, build_results, load_results, status_counts


def index(root: str, db: str | None = None, experiment: str | None = None) -> Results:
    """Rebuild the catalog of `root` from storage (what `lico-tune index` runs)."""
    cat = Catalog(root, db, build=True)
    cat.index(experiment)
    return build_results(root, cat.experiments(), cat.trials(), cat.url)


def trial_record(root: str, experiment: str, trial_id: str, db: str | None = None) -> dict | None:
    """One trial with its learning curves (history), spec text and full error, from the catalog."""
    return Catalog(root, db).trial(experiment, trial_id)


__all__ = [
    "Catalog", "default_url", "ExperimentReport", "build_report", "default_metrics", "experiment_report", "render",
    "metric_mode", "scan_experiment", "scan_root", "aggregate", "best_configs", "bootstrap_interval", "correct", "holm",
    "paired_test", "paired_vs_baseline", "param_importance", "pareto_mask", "t_interval", "Storage", "is_uri",
    "normalise_root", "Results", "build_results", "load_results", "status_counts", "index", "trial_record",
]
