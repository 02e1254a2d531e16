"""Compare: two experiments side by side (mean ± sd per dataset and arm), and the learning curves of
many trials overlaid (of any experiments)."""
import altair as alt
import pandas as pd
import streamlit as st

import common
from lico_tune.results.report import default_metrics

res, root, db, stamp = common.page("Compare", "Two experiments side by side; many trials' learning curves "
                                   "in one chart.")
names = list(res.experiments["experiment"])

st.subheader("Experiments side by side")
c1, c2 = st.columns(2)
a = c1.selectbox("Left", names, index=max(0, len(names) - 2), key="cmp_a")
b = c2.selectbox("Right", names, index=len(names) - 1, key="cmp_b")


def summary(name: str) -> dict:
    """'dataset · arm · metric' -> 'mean ± sd (n)' over the finished trials of `name` (its default metrics)."""
    r = res.experiment(name)
    u = r.usable
    metrics = [m for m in default_metrics(r, name) if m in u.columns and u[m].notna().any()] if not u.empty else []
    out = {}
    for (ds, arm), g in (u.groupby(["dataset", "arm"]) if not u.empty else []):
        for m in metrics:
            v = pd.to_numeric(g[m], errors="coerce").dropna()
            if not v.empty:
                sd = f" ± {v.std(ddof=1):.2g}" if len(v) > 1 else ""
                out[f"{ds} · {arm} · {m}"] = f"{v.mean():.4g}{sd} (n={len(v)})"
    return out


# One row per dataset, arm and metric; one column per experiment: the two read across, and the
# table stays two columns wide whatever the experiments hold.
left, right = summary(a), summary(b)
cols = {f"left: {a}": left, f"right: {b}": right}
for c, name in zip((c1, c2), (a, b)):
    c.caption(f"{len(res.experiment(name).trials)} trials, {len(res.experiment(name).usable)} finished")
table = pd.DataFrame(cols).reindex(list(dict.fromkeys([*left, *right]))).fillna("–")
table.index.name = "dataset · arm · metric"
st.dataframe(table, width="stretch")
st.caption("Mean ± sd over the finished trials of each dataset and arm (seeds and sampled values pooled); the "
           "Ablations page gives intervals and paired tests within one experiment.")

st.subheader("Learning curves")
chosen = st.multiselect("Experiments", names, default=list(dict.fromkeys([a, b])), key="cmp_exps")
pool = res.trials[res.trials["experiment"].isin(chosen) & (res.trials["n_epochs"].fillna(0) > 0)]
if pool.empty:
    st.info("No trial of these experiments has reported an epoch yet.")
    st.stop()
labels = {f"{x['experiment']} · {common.trial_label(x)}": x for _, x in pool.iterrows()}
picked = st.multiselect("Trials", list(labels), default=list(labels)[:12], key="cmp_trials")
rows = []
for label in picked:
    x = labels[label]
    rec = common.trial_record(root, db, stamp, x["experiment"], x["trial_id"]) or {}
    for h in rec.get("history") or []:
        tag = f"{x['trial_id']} ({x['arm']})"
        # The trial first: a legend cuts long labels at the end, and the trial id tells them apart.
        rows.append({"trial": f"{tag} · {x['experiment']}" if len(chosen) > 1 else tag, "arm": x["arm"],
                     "dataset": x["dataset"], **h})
if not rows:
    st.info("Choose trials that have reported at least one epoch.")
    st.stop()
hist = pd.DataFrame(rows)
curves = [m for m in hist.columns if "/" in m and pd.api.types.is_numeric_dtype(hist[m]) and hist[m].notna().any()]
first = "test/acc" if "test/acc" in curves else curves[0]
metric = st.selectbox("Metric", curves, index=curves.index(first), key="cmp_metric")
d = hist[["trial", "arm", "dataset", "epoch", metric]].dropna()
y = alt.Y(f"{metric}:Q", title=metric, scale=alt.Scale(zero=False))
st.altair_chart(alt.Chart(d).mark_line(point=True, opacity=0.8).encode(
    x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)), y=y,
    color=alt.Color("trial:N", title="trial", legend=alt.Legend(labelLimit=360)), strokeDash=alt.StrokeDash("dataset:N"),
    tooltip=["trial", "arm", "dataset", "epoch", metric]).properties(height=380), width="stretch")
st.caption(f"{d['trial'].nunique()} trial(s); one line per trial (colour), dash per dataset. Metrics that a trial "
           f"reports at its last epoch only (saliency) are single points.")
