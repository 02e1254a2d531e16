"""Shared by the dashboard's pages: which results root, cached data, selectors, friendly messages.

Data comes from the catalog database (lico_tune.results.catalog), brought up to date with
`Catalog.sync` at most every 30 s (or at once with the sidebar's Rescan button); every cached
function is keyed on the catalog's stamp (when its rows last changed), so a page rerun costs one
small query until the results change. The sidebar's "Live update" toggle (on by default) re-reads
the results every LIVE_EVERY_S seconds and reruns the page when they changed, as optuna-dashboard's
live update does: new trials, and new experiments that appear under the root after the page opened.
It never watches a root that cannot be used (a cloud root that does not answer): a hung watch
would hold the page, and the next root typed, for good.

Text from the results (trial fields, names, errors, metric names) is shown through `md()`: escaped,
so that no markdown or HTML in a file renders (a markdown image would make the browser fetch its URL).
"""
from __future__ import annotations

import argparse
import os
import re
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
from lico_tune.storage.userpaths import check_path, check_reachable  # noqa: E402

ENV_ROOT = "LICO_TUNE_STORAGE"
DEFAULT_ROOT = "~/lico-tune-results"
LIVE_EVERY_S = 5
ROOT_BOX = "root_box"  # the sidebar's results-root text box
MISSING = "–"        # what an empty cell shows (never the text "None")


# Characters that start markdown (or HTML, LaTeX, Streamlit's [coloured] directives) anywhere in a
# line, and the marks that make a line a heading, list, quote or table row at its start.
# GFM also links bare URLs and e-mail addresses: their "://", "www." and "@" are escaped too.
_MD_ANYWHERE = re.compile(r"([\\`*{}\[\]<>#!|~$&^@]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|:(?=//)|(?<=[wW]{3})\.)")
_MD_LINE_START = re.compile(r"^(\s*)([-+=>]|\d+(?=[.)]))", re.MULTILINE)   # "1." escapes its dot


def md(value) -> str:
    """`value` as literal text inside Streamlit markdown (st.markdown, st.error, captions, metric
    labels, help): every character that could start markdown or HTML is backslash-escaped, so
    `![x](http://host/p.png)` shows as typed and fetches nothing, `**bold**` is not bold."""
    text = MISSING if value is None else str(value)
    text = _MD_ANYWHERE.sub(r"\\\1", text)
    text = _MD_LINE_START.sub(lambda m: m[1] + (m[2] + "\\" if m[2][0].isdigit() else "\\" + m[2]), text)
    return text.replace("\n", "  \n")


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
        st.error(f"{md(problem)} Or enter another results root in the sidebar.")
        return None, root, db, 0.0
    if not Storage(root).exists():
        st.info(f"**No results at {md(root)} yet.** Run a sweep first, e.g. `lico-tune run quickstart.yaml "
                f"--storage ROOT`, or enter another results root in the sidebar.")
        return None, root, db, 0.0
    try:
        stamp = _synced_stamp(root, db, st.session_state.get("rescan", 0))
        res = _results(root, db, stamp)
    except BadInput as exc:   # a file lico-tune refuses to read (a YAML past the spec's limits): its paragraph
        st.error(md(exc))
        return None, root, db, 0.0
    except Exception as exc:  # a damaged or locked catalog: say so, never a traceback
        st.error(f"The catalog of {md(root)} cannot be read ({type(exc).__name__}: {md(exc)}). Rebuild it with "
                 f"`lico-tune index ROOT`.")
        return None, root, db, 0.0
    if res.experiments.empty:
        st.info(f"**{md(root)} holds no experiment yet.** Experiments appear here as soon as Ray Tune writes "
                f"their state (`<experiment>/experiment_state-*.json`); with *Live update* on, without a "
                f"reload. Start one with `lico-tune run SPEC --storage ROOT`.")
        return None, root, db, stamp
    return res, root, db, stamp


def sidebar(res: Optional[Results], root: str, db: Optional[str]) -> None:
    with st.sidebar:
        # A keyed box whose callback sets the root before the next run: no value= that changes with
        # the root (Streamlit then tells the old and the new box apart and sent the previous root back,
        # so the page flipped between the two roots for good after a root that did not answer).
        st.session_state.setdefault(ROOT_BOX, root)
        st.text_input("Results root", key=ROOT_BOX, on_change=_take_root, help="A directory or s3://, gs:// URI")
        if st.button("Rescan storage", help="Re-read experiments whose files changed"):
            st.session_state["rescan"] = st.session_state.get("rescan", 0) + 1
            st.rerun()
        live = st.toggle("Live update", value=True, key="live",
                         help=f"Re-read the results every {LIVE_EVERY_S} s and refresh the page when they changed: "
                              f"new trials and new experiments under the root")
        if live and watchable(root):
            _watch(root, db)
        if res is not None:
            st.caption(f"{len(res.experiments)} experiment(s), {len(res.trials)} trial(s). "
                       f"Catalog: {md(res.source)}")


def _take_root() -> None:
    if st.session_state.get(ROOT_BOX, "").strip():
        st.session_state["root"] = st.session_state[ROOT_BOX].strip()


def watchable(root: str) -> bool:
    """Live update watches only a root that answers (it may not exist yet): a watch of an
    unreachable cloud root would block every rerun of the page, the one that loads the next root
    typed included."""
    return root_problem(root) is None


@st.fragment(run_every=LIVE_EVERY_S)
def _watch(root: str, db: Optional[str]) -> None:
    """While live update is on: sync the catalog now and then; rerun the whole page when it changed,
    or when the root itself appeared (a page opened before the first `lico-tune run` into it)."""
    exists = Storage(root).exists()
    now = (root, exists, _live_stamp(root, db) if exists else 0.0)
    seen = st.session_state.setdefault("_live", now)
    if now != seen and seen[0] == root:
        st.session_state["_live"] = now
        st.session_state["rescan"] = st.session_state.get("rescan", 0) + 1    # past the 30 s sync cache
        st.rerun(scope="app")
    st.session_state["_live"] = now


def _live_stamp(root: str, db: Optional[str]) -> float:
    cat = Catalog(root, db)
    cat.sync()
    return cat.stamp()


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
                a, b = st.slider(md(metric), lo, hi, (lo, hi), key=f"{key}_f_range")     # a label is markdown
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
            st.warning(md(str(w)))
    d = res.damaged
    if d.empty:
        return
    lines = "\n".join(f"- {md(r.trial_dir)}: {md(r.warnings)}" for r in d.itertuples())
    st.warning(f"**{len(d)} damaged trial(s)** (listed, and left out of the statistics where their metrics "
               f"are incomplete):\n{lines}")


def preferred(options: list[str], declared) -> int:
    """Index of the default among metric `options`: the search's own metrics first (search.metrics,
    in their order), then a validation metric, then the first. A search that selected on val/*
    never opens on a test number."""
    for m in list(declared or []):
        if m in options:
            return options.index(m)
    return next((i for i, m in enumerate(options) if m.startswith("val/")), 0)


NO_VARIATION = "the objective does not vary"


def objective_varies(t: pd.DataFrame, metric: str) -> bool:
    """Whether `metric` takes two or more values over the trials `t`: an importance of a constant
    is noise (fANOVA then hands all of it to one parameter: 1.0 for an epsilon that cannot act)."""
    vals = pd.to_numeric(t[metric], errors="coerce").dropna() if metric in t.columns else pd.Series(dtype=float)
    return vals.nunique() > 1


def inert_left_out(t: pd.DataFrame, inert: dict[str, list[str]], param: str) -> tuple[pd.DataFrame, list[str]]:
    """The trials of `t` in which `param` can act, and the arms left out (those where the plan found
    it cannot change training: lico_tune.plan.inert), so that a CE arm does not flatten its plot."""
    arms = [a for a in inert.get(param, []) if a in set(t["arm"])]
    return t[~t["arm"].isin(arms)], arms


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
