"""Shared by the dashboard's pages: which results root, cached data, selectors, friendly messages.

Data comes from the catalog database (lico_tune.results.catalog), brought up to date with
`Catalog.sync` at most every 30 s (or at once with the sidebar's Rescan button); every cached
function is keyed on the catalog's stamp (when its rows last changed), so a page rerun costs one
small query until the results change.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import streamlit as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:       # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from lico_tune.results import Catalog, Results, build_results, experiment_report  # noqa: E402
from lico_tune.storage import Storage, normalise_root  # noqa: E402

ENV_ROOT = "LICO_TUNE_STORAGE"
DEFAULT_ROOT = "~/lico-tune-results"


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
    return normalise_root(root), db


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
    if not Storage(root).exists():
        st.info(f"**No results at `{root}` yet.** Run a sweep first, e.g.\n\n"
                f"```\nlico-tune run search_spaces/quickstart.yaml --storage {root}\n```\n\n"
                f"or enter another results root in the sidebar.")
        return None, root, db, 0.0
    try:
        stamp = _synced_stamp(root, db, st.session_state.get("rescan", 0))
        res = _results(root, db, stamp)
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
        if new and normalise_root(new) != root:
            st.session_state["root"] = new
            st.rerun()
        if st.button("Rescan storage", help="Re-read experiments whose files changed"):
            st.session_state["rescan"] = st.session_state.get("rescan", 0) + 1
            st.rerun()
        if res is not None:
            st.caption(f"{len(res.experiments)} experiment(s), {len(res.trials)} trial(s). "
                       f"Catalog: `{res.source}`")


def pick_experiment(res: Results, key: str) -> str:
    """An experiment selector whose choice carries over between pages."""
    names = list(res.experiments["experiment"])
    qp = st.query_params.get("experiment")
    current = st.session_state.get("_experiment") or qp
    index = names.index(current) if current in names else len(names) - 1
    name = st.selectbox("Experiment", names, index=index, key=f"experiment_{key}")
    st.session_state["_experiment"] = name
    return name


def warn_damaged(res: Results) -> None:
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
