"""Trial: learning curves (CE, MM, OT, accuracy), the health curves of the LICO terms, the resolved spec, the checkpoint, provenance
and, for a failed trial, its error."""
import altair as alt
import pandas as pd
import streamlit as st

import common
from lico_tune.keys import CHANCE_KINDS, HEALTH_GROUPS, HEALTH_WARNINGS, OLD_HEALTH_GROUPS, read_health_warnings
from lico_tune.layout import ERROR_FILE, TRIAL_SPEC

HEALTH = {**HEALTH_GROUPS, **OLD_HEALTH_GROUPS}   # experiments trained before fidelity v2 show their own


def curves(hist: pd.DataFrame, groups: dict) -> None:
    """One line chart per group of per-epoch metrics, two per row."""
    items = list(groups.items())
    for i in range(0, len(items), 2):
        cols = st.columns(2)
        for col, (title, ms) in zip(cols, items[i:i + 2]):
            have = [m for m in ms if m in hist.columns and hist[m].notna().any()]
            if not have:
                col.caption(f"No {title.lower()} reported.")
                continue
            d = hist[["epoch", *have]].melt("epoch", var_name="metric", value_name="value").dropna()
            col.altair_chart(alt.Chart(d).mark_line(point=True).encode(
                x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)),
                y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
                color="metric:N", tooltip=["epoch", "metric", "value"]).properties(title=title, height=280),
                width="stretch")


res, root, db, stamp = common.page("Trial", "One trial in detail.")
name = common.pick_experiment(res, "trial")
r = res.experiment(name)
t = common.trial_filter(r.trials, [m for m in r.metrics if m in r.trials.columns], key="trial")
if t.empty:
    st.info("No trial passes the filter.")
    st.stop()
labels = {common.trial_label(x): x["trial_id"] for _, x in t.iterrows()}
ids = list(labels.values())
wanted = st.query_params.get("trial") or st.session_state.get("_trial")
index = ids.index(wanted) if wanted in ids else 0
label = st.selectbox("Trial", list(labels), index=index, key="trial_pick")
trial_id = labels[label]
st.session_state["_trial"] = trial_id
row = t[t["trial_id"] == trial_id].iloc[0]
rec = common.trial_record(root, db, stamp, name, trial_id) or {}

c = st.columns(5)
c[0].metric("Status", row["status"])
c[1].metric("Epochs", int(row["n_epochs"] or 0))
for col, m in zip(c[2:], ("test/acc", "test/acc_ema", "train/loss")):
    if m in t.columns and pd.notna(row.get(m)):
        col.metric(common.md(m), f"{row[m]:.4g}")

if row["status"] == "errored":
    st.error(f"**Failed:** {common.md(row['error'] or 'no reason recorded')}")
    if rec.get("error_detail"):
        with st.expander(f"Traceback ({ERROR_FILE})"):
            st.code(rec["error_detail"], language="text")
if row["damaged"]:
    st.warning(f"**Damaged trial:** {common.md(row['warnings'])}")
for w in row.get("health") or ():   # HealthWarning values; every arm: did the explained model learn anything?
    if w.kind in CHANCE_KINDS:
        st.warning(common.md(str(w)))

st.subheader("Learning curves")
hist = pd.DataFrame(rec.get("history") or [])
if hist.empty or "epoch" not in hist.columns:
    st.info("This trial has reported no epoch yet.")
else:
    groups = {"Losses": ["train/ce", "train/mm", "train/ot", "train/loss"],
              "Accuracy (%)": ["test/acc", "test/acc_ema"]}
    curves(hist, groups)
    if any(m in hist.columns for ms in HEALTH.values() for m in ms):    # LICO arms only
        st.subheader("Health of the LICO terms")
        given = hist[HEALTH_WARNINGS].dropna().iloc[-1] if HEALTH_WARNINGS in hist.columns else ""
        for w in read_health_warnings(given):
            if w.kind not in CHANCE_KINDS:     # shown above for every arm
                st.warning(common.md(str(w)))
        curves(hist, {title: ms for title, ms in HEALTH.items()     # the older runs' group only where reported
                      if "older runs" not in title or any(m in hist.columns for m in ms)})
        st.caption("MM at the reference temperature (a fixed batch, one fixed tau) should fall below its "
                   "untrained value mm_ref0; each term's fraction of the squared gradient norm and its dose "
                   "(a ratio of norms to CE's) are measured at the backbone's feature map on 16 steps spread "
                   "over training (dose0: the untrained model); marginal error is the largest final "
                   "row-marginal L1 error of the epoch's Sinkhorn solves; text cosines near 1 mean degenerate "
                   "(within a class) or collapsed (between classes) text points.")
    with st.expander("Every reported metric per epoch"):
        st.dataframe(common.tidy(hist), hide_index=True, width="stretch")

left, right = st.columns([3, 2])
with right:
    st.subheader("Checkpoint")
    if isinstance(row["checkpoint"], str) and row["checkpoint"]:
        st.code(row["checkpoint"], language="text", wrap_lines=True)
        st.caption("Reload it with `lico-tune explain` or `lico_tune.train.checkpoint.load_checkpoint(<dir>/checkpoint.pt)`.")
    else:
        st.info("No checkpoint: the trial failed before its first epoch ended, or its checkpoint directories "
                "are missing.")
    st.caption(f"Trial directory: {common.md(row['path'])}")
    params = {k: row[k] for k in r.params.get(name, []) if k in row.index}
    st.subheader("Searched values and provenance")
    st.json({"arm": row["arm"], "params": {k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()},
             "provenance": rec.get("provenance")}, expanded=2)
with left:
    st.subheader("Resolved spec")
    if rec.get("spec"):
        st.code(rec["spec"], language="yaml")
    else:
        st.info(f"No {TRIAL_SPEC} in the trial directory.")
