"""Shared by the dashboard's pages: which results root, cached data, selectors, friendly messages.

Data comes from the catalog database (lico_tune.results.catalog), brought up to date with
`Catalog.sync` at most every 30 s (or at once with the sidebar's Rescan button); every cached
function is keyed on the catalog's stamp (when its rows last changed), so a page rerun costs one
small query until the results change. The sidebar's "Live update" toggle (on by default while an
experiment runs) re-reads the results every LIVE_EVERY_S seconds and reruns the page when they
changed, as optuna-dashboard's live update does.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import pandas as pd
import streamlit as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:       # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from lico_tune.errors import BadInput  # noqa: E402
from lico_tune.results import Catalog, Results, build_results, experiment_report  # noqa: E402
from lico_tune.storage import Storage, normalise_root  # noqa: E402
from lico_tune.userpaths import check_path, check_reachable  # noqa: E402

ENV_ROOT = "LICO_TUNE_STORAGE"
DEFAULT_ROOT = "~/lico-tune-results"
LIVE_EVERY_S = 5
MISSING = "–"        # what an empty cell shows (never the text "None")


def _cli_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--storage")
    p.add_argument("--db")
    args, _ = p.parse_known_args(sys.argv[1:] if "--storage" in sys.argv or "--db" in sys.argv else [])
    return args


def settings() -> tuple[str, Optional[str]]:
    """(results root, catalog URL or None): the sidebar's value, else `lico-tune dashboard`'s
    arguments, else $LICO_TUNE_STORAGE / $LICO_TUNE_CATALOG, else ~/lico-tune-results."""
    args = _cli_args()
    root = st.session_state.get("root") or args.storage or os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    db = args.db or os.environ.get("LICO_TUNE_CATALOG") or None
    return _normalised(root), db


def _normalised(root: str) -> str:
    """normalise_root, or the text as typed when no path can be made of it (load() says why)."""
    try:
        check_path(root, "The results root")
    except BadInput:
        return root
    return normalise_root(root)


@st.cache_data(ttl=60, show_spinner="Checking the results root...")
def root_problem(root: str) -> Optional[str]:
    """Why the root cannot be used (an impossible path, a cloud root that does not answer within
    seconds: never a hung page), or None."""
    try:
        check_reachable(root, "The results root")
    except BadInput as exc:
        return str(exc)
    return None


@st.cache_data(ttl=30, show_spinner="Reading the results root...")
def _synced_stamp(root: str, db: Optional[str], nonce: int) -> float:
    cat = Catalog(root, db)
    cat.sync()
    return cat.stamp()


@st.cache_data(show_spinner=False, max_entries=8)
def _results(root: str, db: Optional[str], stamp: float) -> Results:
    cat = Catalog(root, db)
    return build_results(root, cat.experiments(), cat.trials(), cat.url)


@st.cache_data(show_spinner=False, max_entries=64)
def trial_record(root: str, db: Optional[str], stamp: float, experiment: str, trial_id: str) -> Optional[dict]:
    return Catalog(root, db).trial(experiment, trial_id)


@st.cache_data(show_spinner=False, max_entries=32)
def report(root: str, db: Optional[str], stamp: float, experiment: str, metrics: tuple, baseline: Optional[str],
           level: float, method: str, correction: str = "holm", margins: tuple = ()):
    res = _results(root, db, stamp)
    return experiment_report(res, experiment, metrics=list(metrics) or None, baseline=baseline, level=level,
                             method=method, correction=correction, margins=list(margins))


@st.cache_data(show_spinner=False, max_entries=256)
def read_bytes(path: str, stamp: float) -> Optional[bytes]:
    return Storage(path).read_bytes(path)


@st.cache_data(show_spinner=False, max_entries=256)
def list_dir(path: str, stamp: float) -> list[str]:
    return [e.name for e in Storage(path).list(path)]


def load() -> tuple[Optional[Results], str, Optional[str], float]:
    """(results or None, root, db, stamp). None means the page should stop: a friendly message
    has been shown (missing root, no experiments yet, an unreadable catalog)."""
    root, db = settings()
    if (problem := root_problem(root)) is not None:
        st.error(f"{problem} Or enter another results root in the sidebar.")
        return None, root, db, 0.0
    if not Storage(root).exists():
        st.info(f"**No results at `{root}` yet.** Run a sweep first, e.g.\n\n"
                f"```\nlico-tune run search_spaces/quickstart.yaml --storage {root}\n```\n\n"
                f"or enter another results root in the sidebar.")
        return None, root, db, 0.0
    try:
        stamp = _synced_stamp(root, db, st.session_state.get("rescan", 0))
        res = _results(root, db, stamp)
    except BadInput as exc:   # a file lico-tune refuses to read (a YAML past the spec's limits): its paragraph
        st.error(str(exc))
        return None, root, db, 0.0
    except Exception as exc:  # a damaged or locked catalog: say so, never a traceback
        st.error(f"The catalog of `{root}` cannot be read ({type(exc).__name__}: {exc}). Rebuild it with "
                 f"`lico-tune index {root}`.")
        return None, root, db, 0.0
    if res.experiments.empty:
        st.info(f"**`{root}` holds no experiment yet.** Experiments appear here as soon as Ray Tune writes "
                f"their state (`<experiment>/experiment_state-*.json`). Start one with "
                f"`lico-tune run SPEC --storage {root}`.")
        return None, root, db, stamp
    return res, root, db, stamp


def sidebar(res: Optional[Results], root: str, db: Optional[str]) -> None:
    with st.sidebar:
        new = st.text_input("Results root", value=root, help="A directory or s3://, gs:// URI")
        if new and _normalised(new) != root:
            st.session_state["root"] = new
            st.rerun()
        if st.button("Rescan storage", help="Re-read experiments whose files changed"):
            st.session_state["rescan"] = st.session_state.get("rescan", 0) + 1
            st.rerun()
        running = res is not None and "run_state" in res.experiments and (res.experiments["run_state"] == "running").any()
        if st.toggle("Live update", value=running, key="live",
                     help=f"Re-read the results every {LIVE_EVERY_S} s and refresh the page when they changed "
                          f"(on by default while an experiment runs)"):
            _watch(root, db)
        if res is not None:
            st.caption(f"{len(res.experiments)} experiment(s), {len(res.trials)} trial(s). "
                       f"Catalog: `{res.source}`")


@st.fragment(run_every=LIVE_EVERY_S)
def _watch(root: str, db: Optional[str]) -> None:
    """While live update is on: sync the catalog now and then; rerun the whole page when it changed."""
    cat = Catalog(root, db)
    cat.sync()
    stamp = cat.stamp()
    seen = st.session_state.setdefault("_live_stamp", stamp)
    if stamp != seen:
        st.session_state["_live_stamp"] = stamp
        st.session_state["rescan"] = st.session_state.get("rescan", 0) + 1    # past the 30 s sync cache
        st.rerun(scope="app")


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """A table for st.dataframe without 'None' cells: a column with gaps shows them as MISSING
    (its numbers as text with 4 significant digits); complete columns keep their types."""
    out = df.copy()
    for c in out.columns:
        col = out[c]
        if not col.isna().any():
            continue
        num = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        out[c] = [MISSING if _missing(v) else (f"{v:.4g}" if num or isinstance(v, float) else v) for v in col]
    return out


def _missing(v) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):     # a list or dict cell
        return False


def trial_filter(t: pd.DataFrame, metrics: list[str], key: str) -> pd.DataFrame:
    """The trials that pass the filter above the table: arm, dataset, status, and a range of one metric."""
    with st.expander("Filter trials", expanded=False):
        c = st.columns(4)
        keep = pd.Series(True, index=t.index)
        for col, field in zip(c[:3], ("arm", "dataset", "status")):
            values = sorted(str(v) for v in t[field].dropna().unique())
            chosen = col.multiselect(field.capitalize(), values, default=values, key=f"{key}_f_{field}")
            keep &= t[field].astype(str).isin(chosen)
        metric = c[3].selectbox("Metric range", [MISSING, *metrics], key=f"{key}_f_metric")
        if metric != MISSING:
            vals = pd.to_numeric(t[metric], errors="coerce")
            lo, hi = float(vals.min()), float(vals.max())
            if lo < hi:
                a, b = st.slider(metric, lo, hi, (lo, hi), key=f"{key}_f_range")
                keep &= vals.between(a, b)
    out = t[keep]
    st.caption(f"{len(out)} of {len(t)} trials shown.")
    return out


def pick_experiment(res: Results, key: str) -> str:
    """An experiment selector whose choice carries over between pages; the newest by default."""
    from lico_tune.results.pick import latest_experiment
    names = list(res.experiments["experiment"])
    qp = st.query_params.get("experiment")
    current = st.session_state.get("_experiment") or qp or latest_experiment(res)
    index = names.index(current) if current in names else len(names) - 1
    name = st.selectbox("Experiment", names, index=index, key=f"experiment_{key}")
    st.session_state["_experiment"] = name
    return name


def warn_damaged(res: Results) -> None:
    names = set(res.experiments["experiment"]) if "experiment" in res.experiments else set()
    for w in res.warnings:        # an experiment whose files were refused (damaged, a YAML past the limits)
        if w.trial is None and w.experiment in names:
            st.warning(w)
    d = res.damaged
    if d.empty:
        return
    lines = "\n".join(f"- `{r.trial_dir}`: {r.warnings}" for r in d.itertuples())
    st.warning(f"**{len(d)} damaged trial(s)** (listed, and left out of the statistics where their metrics "
               f"are incomplete):\n{lines}")


def trial_label(r) -> str:
    seed = "" if r["seed"] is None or r["seed"] != r["seed"] else f" · seed {r['seed']}"
    return f"{r['trial_id']} · {r['arm']} · {r['dataset']}{seed} · {r['status']}"


def metric_label(m: str) -> str:
    return m


def page(title: str, intro: str = "") -> tuple[Results, str, Optional[str], float]:
    """Title, data and sidebar of a page; stops the page (after a friendly message) when there
    is nothing to show."""
    st.title(title)
    if intro:
        st.caption(intro)
    res, root, db, stamp = load()
    sidebar(res, root, db)
    if res is None:
        st.stop()
    return res, root, db, stamp


def compact_spec(spec: dict) -> dict:
    """The spec without the fields that equal their defaults (what the author chose)."""
    from lico_tune.spec import Spec

    def strip(tree, default):
        if not isinstance(tree, dict) or not isinstance(default, dict):
            return tree
        out = {}
        for k, v in tree.items():
            if k in default and v == default[k]:
                continue
            out[k] = strip(v, default.get(k)) if isinstance(v, dict) and isinstance(default.get(k), dict) else v
        return out

    return strip(spec, Spec().model_dump(mode="json"))
