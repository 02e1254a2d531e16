"""Hyperparameters: each metric against each searched parameter (points, mean line, 95% CI band),
parallel coordinates, parameter importance, and the accuracy-vs-explanation Pareto front. The arms in
which a parameter cannot change training (lico_tune.plan.inert: a CE arm for an OT field) are left
out of that parameter's plot and of the importance; a metric that does not vary gets no importance."""
import altair as alt
import pandas as pd
import streamlit as st

import common
from charts import log_params, parallel_coordinates
from lico_tune.results import aggregate, param_importance, pareto_mask
from lico_tune.results.ranges import metric_range
from lico_tune.keys import DATASET_PATH, is_hyperparameter, is_seed
from lico_tune.plan.cells import inert_arms

res, root, db, stamp = common.page("Hyperparameters", "How each searched parameter moves each metric.")
name = common.pick_experiment(res, "hyper")
r = res.experiment(name)
t = r.usable
if t.empty:
    st.info("No trial of this experiment has finished with intact results yet.")
    st.stop()

metrics = [m for m in r.metrics if t[m].notna().any()]
c1, c2, c3 = st.columns([2, 2, 2])
declared = list(r.declared_metrics(name))         # the search's own metrics (val/* unless it chose test)
metric = c1.selectbox("Metric", metrics, index=common.preferred(metrics, declared), key="hp_metric")
# One dataset at a time: accuracies of different datasets are not on one scale, so neither a
# plot, an importance nor a Pareto front mixes them; the dataset is not a hyperparameter.
datasets = sorted(set(t["dataset"].dropna()))
dataset = c2.selectbox("Dataset", datasets, key="hp_dataset")
arms = sorted(set(t["arm"]))
chosen = c3.multiselect("Arms", arms, default=arms, key="hp_arms")
t = t[t["arm"].isin(chosen) & (t["dataset"] == dataset)]
t = t.dropna(subset=[metric])
varied = [p for p in r.params.get(name, []) if p in t.columns and p != DATASET_PATH and t[p].nunique(dropna=True) > 1]
seeds = [p for p in varied if is_seed(p)]   # the seed and the repeat index (lico_tune.keys's one rule)
with_seed = st.checkbox("Plot the seed too", value=False, key="hp_seed",
                        help="Seeds are noise, not a choice: they are never in the importance; plot them to see "
                             "how much they move a metric.") if seeds else False
hyper = [p for p in varied if is_hyperparameter(p)]   # the hyperparameters proper
params = [p for p in varied if with_seed or p not in seeds]
mode = r.mode(metric, name)
rng = metric_range(metric)
st.caption(f"{len(t)} finished trial(s) on {common.md(dataset)}; {common.md(metric)} is better "
           f"{'higher' if mode == 'max' else 'lower'}.")
if t.empty:
    st.info("No trial matches the selection.")
    st.stop()

logs = frozenset(log_params(r.experiments.iloc[0]["spec"]))     # loguniform parameters: log axes
spec = r.experiments.iloc[0]["spec"]
inert = inert_arms(spec) if isinstance(spec, dict) else {}      # param -> arms where it cannot act
st.subheader(f"{common.md(metric)} against each searched parameter")
if not params:
    st.info("This selection varies no searched parameter (one value each): nothing to plot.")
for i, p in enumerate(params):
    if i % 2 == 0:
        cols = st.columns(2)
    tp, out = common.inert_left_out(t, inert, p)
    if tp.empty:
        cols[i % 2].info(f"{common.md(p)} cannot change training in the chosen arms ({common.md(', '.join(out))}): "
                         f"nothing to plot.")
        continue
    numeric = pd.api.types.is_numeric_dtype(tp[p]) and tp[p].nunique() > 2
    d = tp[["trial_id", "arm", "dataset", p, metric]].rename(columns={p: "x", metric: "y"})
    s = aggregate(d.assign(experiment=name), ["y"], by=("arm", "x"))
    if rng is not None:      # a t interval at n = 2 can reach far past the metric's range (accuracy 0-100)
        s = s.assign(ci_low=s["ci_low"].clip(*rng), ci_high=s["ci_high"].clip(*rng))
    if numeric:
        log = bool((d["x"] > 0).all() and (p in logs or d["x"].max() / d["x"].min() > 20))
        x = alt.X("x:Q", title=p, scale=alt.Scale(zero=False, type="log" if log else "linear"))
    else:
        x = alt.X("x:N", title=p, axis=alt.Axis(labelAngle=0))
    off = {} if numeric else {"xOffset": "arm:N"}      # arms side by side at each category
    pts = alt.Chart(d).mark_circle(size=50, opacity=0.7).encode(
        x=x, y=alt.Y("y:Q", title=metric, scale=alt.Scale(zero=False)), color="arm:N",
        tooltip=["trial_id", "arm", "dataset", "x", "y"], **off)
    line = (alt.Chart(s).mark_line(point=True) if numeric else alt.Chart(s).mark_point(filled=True, size=90,
                                                                                          shape="diamond")).encode(
        x=x, y=alt.Y("mean:Q", title=metric), color="arm:N", **off)
    band = (alt.Chart(s).mark_area(opacity=0.15).encode(x=x, y=alt.Y("ci_low:Q", title=metric), y2="ci_high:Q",
                                                        color="arm:N")
            if numeric else alt.Chart(s).mark_rule(strokeWidth=2, opacity=0.6).encode(
                x=x, y=alt.Y("ci_low:Q", title=metric), y2="ci_high:Q", color="arm:N", **off))
    cols[i % 2].altair_chart(alt.layer(band, line, pts).properties(title=f"{metric} vs {p}", height=320),
                             width="stretch")
    if out:
        cols[i % 2].caption(f"Left out: arm{'s' if len(out) > 1 else ''} {common.md(', '.join(out))}, where "
                            f"{common.md(p)} cannot change training (see `lico-tune validate`).")
st.caption("Points: trials; line (numeric) or diamond (categorical): mean per value; band or bar: 95% t "
           "interval over the trials at that value, per arm.")

st.subheader("Configurations over their seeds")
if "config_id" in t.columns and t["config_id"].notna().any():
    cfg = aggregate(t.assign(experiment=name), [metric], by=("config_id", "arm", "dataset"))
    first = t.drop_duplicates("config_id").set_index("config_id")[params] if params else None
    table = cfg[["config_id", "arm", "dataset", "n", "mean", "ci_low", "ci_high"]]
    if first is not None:
        table = table.join(first, on="config_id")
    full = table["n"] == table["n"].max()
    st.dataframe(common.tidy(table.assign(all_seeds=full).sort_values("mean", ascending=mode == "min")),
                 hide_index=True, width="stretch")
    st.caption(f"One row per configuration (config_id: its arm and searched values, seeds and repeats pooled); "
               f"mean and 95% t interval of {metric} over its n seeds. A configuration is only 'best' with all "
               f"its seeds (all_seeds).")

st.subheader("Parallel coordinates")
axes = params + [metric]
if len(axes) >= 2:
    st.plotly_chart(parallel_coordinates(t, axes, metric, logs), width="stretch", key="hp_parcoords")
    st.caption("Drag along an axis to keep only the trials in that range (drag again elsewhere to clear); "
               "categorical axes show their values as ticks.")
else:
    st.info("Parallel coordinates need at least one searched parameter with two or more values.")

st.subheader("Parameter importance")
# Each parameter's importance over the trials where it can act: the arms where one cannot are left out.
dropped = sorted({a for p in hyper for a in common.inert_left_out(t, inert, p)[1]})
ti = t[~t["arm"].isin(dropped)]
hyper = [p for p in hyper if p in ti.columns and ti[p].nunique(dropna=True) > 1]
imp = param_importance(ti, hyper, metric, mode)
if hyper and not common.objective_varies(ti, metric):
    st.info(f"No importance: {common.NO_VARIATION} ({common.md(metric)} is the same in all {len(ti)} trials), so "
            f"no parameter explains any of it.")
elif imp.empty:
    st.info("No searched parameter varies in this selection: no importance to estimate.")
else:
    st.altair_chart(alt.Chart(imp).mark_bar().encode(
        x=alt.X("importance:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("param:N", sort="-x", title=None),
        tooltip=["param", "importance"]).properties(height=70 + 36 * len(imp)), width="stretch")
    st.caption(f"Importance of {', '.join(imp['param'])} (the dataset and the seeds are not hyperparameters): "
               f"{imp['method'].iloc[0]} over {len(ti)} trials of {common.md(dataset)}, normalised to sum to 1. With few "
               f"trials it is a rough guide, not a test." +
               (f" Left out: arm{'s' if len(dropped) > 1 else ''} {common.md(', '.join(dropped))}, where a parameter "
                f"cannot change training." if dropped else ""))

st.subheader("Accuracy vs explanation: the Pareto front")
acc = [m for m in ("val/acc", "val/acc_ema", "test/acc", "test/acc_ema") if m in r.metrics and r.usable[m].notna().any()]
sal = [m for m in r.metrics if m.startswith(("saliency/", "val/saliency/")) and m.endswith(("/overall", "/insertion", "/pointing",
                                                                           "/ses", "/energy"))
       and r.usable[m].notna().any()]
if not acc or not sal:
    st.info("The Pareto front needs trials that report both an accuracy and a saliency score "
            "(eval.cams with eval.n_images > 0).")
else:
    c1, c2 = st.columns(2)
    xa = c1.selectbox("Accuracy", acc, index=common.preferred(acc, declared), key="hp_pareto_acc")
    # The search's own score, else the overall score on validation images, else on test images.
    overall = sorted((m for m in sal if m.endswith("/overall")), key=lambda m: not m.startswith("val/"))
    ya = c2.selectbox("Explanation score", sal, index=sal.index(next((m for m in declared if m in sal), None) or
                                                                 (overall[0] if overall else sal[0])),
                      key="hp_pareto_sal")
    d = t.dropna(subset=[xa, ya])[["trial_id", "arm", "dataset", xa, ya]].copy()   # one dataset: see above
    d["front"] = pareto_mask(d, {xa: "max", ya: r.mode(ya, name)})
    front = d[d["front"]].sort_values(xa)
    chart = alt.layer(
        alt.Chart(d).mark_point(size=80, filled=True).encode(
            x=alt.X(f"{xa}:Q", scale=alt.Scale(zero=False)), y=alt.Y(f"{ya}:Q", scale=alt.Scale(zero=False)),
            color="arm:N", shape=alt.Shape("front:N", title="on the front"),
            tooltip=["trial_id", "arm", "dataset", xa, ya]),
        alt.Chart(front).mark_line(strokeDash=[5, 3], color="black").encode(x=f"{xa}:Q", y=f"{ya}:Q"),
    ).properties(height=340)
    st.altair_chart(chart, width="stretch")
    st.dataframe(common.tidy(front.drop(columns=["front"])), hide_index=True, width="stretch")
    st.caption(f"{int(d['front'].sum())} of {len(d)} trials of {common.md(dataset)} are on the front: no other trial is at least as good "
               f"on both and better on one.")
