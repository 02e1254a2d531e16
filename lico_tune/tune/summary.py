"""The end-of-run summary of a sweep: best configuration (over its seeds) per metric and dataset, the Pareto front (two or more
metrics), mean ± sd per arm and dataset, and the errors; printed and written as summary.json.
The statistics are `results.stats`' (`pareto_mask`, `aggregate`), the same as `lico-tune report`'s."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from ..errors import error_reason
from ..keys import config_id
from ..layout import SUMMARY_FILE
from ..plan import Plan
from ..results.ranges import clipped_interval
from ..results.stats import aggregate, best_configs, pareto_mask
from ..storage import join, write_text


@dataclass
class Summary:
    text: str
    rows: list[dict]
    n_errors: int
    experiment_path: str
    n_unfinished: int = 0
    interrupted: Optional[str] = None       # 'SIGINT' / 'SIGTERM' when the run was stopped by one


def _rows(results, plan: Plan) -> list[dict]:
    """One dict per trial of a ResultGrid: id, arm, dataset, params, epoch, path, error, finished
    and every numeric metric with a '/' in its name."""
    try:    # Tune's own view of each trial (a result's `done` flag is not always kept)
        trials = list(results._experiment_analysis.trials)
    except AttributeError:
        trials = []
    status = {t.trial_id: t.status for t in trials}
    by_dir = {Path(str(t.path)).name: t.trial_id for t in trials}
    rows = []
    for r in results:
        m = dict(r.metrics or {})
        trial_id = m.get("trial_id") or by_dir.get(Path(str(r.path)).name) or Path(str(r.path)).name
        cfg = dict(r.config or {})
        params = {k: v for k, v in cfg.items() if k != "arm"}
        dataset = m.get("dataset")
        if dataset is None:
            try:
                dataset = plan.trial_config(cfg).data.name
            except Exception:  # a config that no longer resolves: leave it unknown
                pass
        row = {"trial_id": trial_id, "arm": cfg.get("arm"), "config_id": m.get("config_id") or config_id(cfg),
               "dataset": dataset, "params": params, "epoch": m.get("epoch"),
               "path": str(r.path), "error": error_reason(r.error),
               "finished": status[trial_id] == "TERMINATED" if trial_id in status else bool(m.get("done"))}
        for key, value in m.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "/" in key:
                row[key] = value
        rows.append(row)
    return rows


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _per_group(done: list[dict], shown: list[str]) -> list[str]:
    """'arm A dataset n=K  metric mean ± sd, ...' per (arm, dataset), ordered by dataset then arm."""
    df = pd.DataFrame([{**r, "arm": r["arm"] or "-", "dataset": str(r["dataset"])} for r in done])
    stats = aggregate(df, shown, by=("arm", "dataset"))
    sizes = df.groupby(["arm", "dataset"]).size()
    lines = []
    for (arm, dataset), n in sorted(sizes.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        parts = []
        for m in shown:
            hit = stats[(stats["arm"] == arm) & (stats["dataset"] == dataset) & (stats["metric"] == m)]
            if hit.empty:
                continue
            mean, sd = float(hit["mean"].iloc[0]), float(hit["sd"].iloc[0])
            sd = 0.0 if math.isnan(sd) else sd          # one trial: no spread
            spec = ".2f" if abs(mean) >= 1 else ".3g"
            parts.append(f"{m} {mean:{spec}} ± {sd:{spec}}")
        lines.append(f"  arm {arm:<12} {dataset:<14} n={n}  " + ", ".join(parts))
    return lines


def _best_lines(done: list[dict], metrics: dict[str, str], experiment: str) -> list[str]:
    """'best METRIC (mode): mean ± half-width (or [low, high], clipped to the metric's range) (n=K seeds)
    - configuration ID, arm, dataset, values;
    trials ...' per metric and dataset: the configuration (all its seeds) with the best mean
    (`results.stats.best_configs`: only configurations with the most seeds compete)."""
    lines = []
    df = pd.DataFrame([{"experiment": experiment, "trial_id": r["trial_id"], "arm": r["arm"] or "-",
                        "dataset": str(r["dataset"]), "config_id": r.get("config_id"), **r["params"],
                        **{m: r.get(m) for m in metrics}} for r in done])
    params = sorted({k for r in done for k in r["params"]})
    best = best_configs(df, metrics, params) if len(df) else pd.DataFrame()
    for metric, mode in metrics.items():
        hits = best[best["metric"] == metric] if len(best) else best
        if hits.empty:
            lines.append(f"best {metric}: no trial reported it (check the metric name in search.metrics)")
            continue
        for _, b in hits.iterrows():
            values = ", ".join(f"{k}={_fmt(v)}" for k, v in b["config"].items())
            clipped = None if math.isnan(b["half_width"]) else clipped_interval(metric, b["mean"], b["half_width"])
            spread = ("" if math.isnan(b["half_width"]) else f" ± {_fmt(b['half_width'])}" if clipped is None
                      else f" [{_fmt(clipped[0])}, {_fmt(clipped[1])}]")
            lines.append(f"best {metric} ({mode}): {_fmt(b['mean'])}{spread} (n={b['n']} seeds) - configuration "
                         f"{b['config_id']}, arm {b['arm']}, dataset {b['dataset']}" + (f", {values}" if values else "")
                         + f"; trials {', '.join(b['trials'])}")
    return lines


def _all_errored(errors: list[dict]) -> str:
    """'every trial errored: REASON' (the distinct reasons, most frequent first, up to three)."""
    reasons: dict[str, int] = {}
    for r in errors:
        reasons[r["error"]] = reasons.get(r["error"], 0) + 1
    ranked = sorted(reasons, key=lambda k: -reasons[k])
    if len(ranked) == 1:
        return f"every trial errored: {ranked[0]}"
    more = f"; and {len(ranked) - 3} other reason(s)" if len(ranked) > 3 else ""
    return "every trial errored: " + "; ".join(f"{reasons[k]}x {k}" for k in ranked[:3]) + more


def _front(done: list[dict], metrics: dict[str, str]) -> list[dict]:
    """The rows on the Pareto front of `metrics` (rows missing a metric are never on it)."""
    if not done:
        return []
    df = pd.DataFrame(done, columns=list(dict.fromkeys(["trial_id", *metrics])))
    return [r for r, keep in zip(done, pareto_mask(df, metrics).tolist()) if keep]


def summarize(results, plan: Plan, out=sys.stdout, interrupted: Optional[str] = None) -> Summary:
    rows = _rows(results, plan)
    if interrupted:
        _unfinished_by_epochs(rows, plan)
    metrics = plan.metrics
    done = [r for r in rows if not r["error"] and r["finished"]]
    errors = [r for r in rows if r["error"]]
    unfinished = [r for r in rows if not r["error"] and not r["finished"]]
    lines = [f"\n== INTERRUPTED by {interrupted}: the experiment did not finish "
             f"(continue with: lico-tune resume {plan.experiment_path}) =="] if interrupted else []
    started = len(rows) if len(rows) >= plan.n_trials else f"{len(rows)} of {plan.n_trials} planned"   # a stopped search
    lines += [f"\n== Summary of {plan.experiment}: {started} trials, {len(done)} finished, "
             f"{len(errors)} errored ==" if not unfinished else
             f"\n== Summary of {plan.experiment}: {started} trials, {len(done)} finished, {len(errors)} errored, "
             f"{len(unfinished)} unfinished (continue with: lico-tune resume {plan.experiment_path}) =="]
    for r in rows:      # as `lico-tune report` says it (results/liveness.py)
        r["status"] = "errored" if r["error"] else "finished" if r["finished"] else "interrupted"
    if rows and len(errors) == len(rows):
        lines.append(_all_errored(errors))
    else:
        lines += _best_lines(done, metrics, plan.experiment)
    if len(metrics) >= 2:
        front = _front(done, metrics)
        lines.append(f"Pareto front ({', '.join(f'{m} {d}' for m, d in metrics.items())}): " +
                     "; ".join(f"{r['trial_id']} (arm {r['arm'] or '-'}: " +
                               ", ".join(f"{_fmt(r[m])}" for m in metrics) + ")" for r in front))
    overall = sorted({k for r in done for k in r if k.startswith("saliency/") and k.endswith("/overall")})
    shown = list(dict.fromkeys([*metrics, "val/acc", "test/acc", "test/acc_ema", *overall]))
    if done:
        lines.append("per arm and dataset (mean ± sd over trials):")
        lines += _per_group(done, shown)
    if errors:
        lines.append("errors:")
        for r in errors:
            lines.append(f"  trial {r['trial_id']} (arm {r['arm'] or '-'}, dataset {r['dataset']}): {r['error']}")
    lines.append(f"results: {plan.experiment_path}" + (f"; Optuna study '{plan.experiment}' in {plan.optuna_url}"
                                                        if plan.optuna_url else ""))
    text = "\n".join(lines)
    print(text, file=out, flush=True)
    try:
        # Records (one object per trial), so `pandas.read_json(path)` gives one row per trial; each row
        # also says whether the experiment finished or was interrupted (by which signal).
        write_text(join(plan.experiment_path, SUMMARY_FILE),
                   json.dumps([{"experiment": plan.experiment,
                                "experiment_finished": not interrupted and not unfinished,
                                "interrupted": interrupted, **r} for r in rows], indent=2, default=str))
    except OSError:
        pass
    return Summary(text=text, rows=rows, n_errors=len(errors), experiment_path=plan.experiment_path,
                   n_unfinished=len(unfinished), interrupted=interrupted)


def _unfinished_by_epochs(rows: list[dict], plan: Plan) -> None:
    """After an interruption Tune marks stopped trials TERMINATED: a trial is finished only when it
    reached its configured epochs."""
    for r in rows:
        if r["error"] or not r["finished"]:
            continue
        try:
            params = {**r["params"], **({"arm": r["arm"]} if r["arm"] else {})}
            epochs = plan.trial_config(params).train.epochs
        except Exception:  # a config that no longer resolves: trust Tune's status
            continue
        r["finished"] = isinstance(r["epoch"], int) and r["epoch"] >= epochs
