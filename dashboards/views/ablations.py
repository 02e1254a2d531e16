"""Ablations: the report's table (mean ± CI over seeds; bold only where the paired interval against
the baseline excludes 0), small-n warnings, bar charts with CI error bars (clipped to the metric's
range) and the seeds as points, and the paired differences against the baseline arm (corrected
over the page's family of tests, with the minimal detectable effect and optional TOST)."""
import altair as alt
import pandas as pd
import streamlit as st

import common
from lico_tune.results.ranges import difference_range
from lico_tune.results.report import SEP, default_metrics
from lico_tune.results import report_text as prose

res, root, db, stamp = common.page("Ablations", "Each arm against the baseline over seeds: the numbers of "
                                   "`lico-tune report`.")
name = common.pick_experiment(res, "ablations")
r = res.experiment(name)
if r.usable.empty:
    st.info("No trial of this experiment has finished with intact results yet: nothing to compare.")
    common.warn_damaged(r)
    st.stop()

c1, c2, c3, c4 = st.columns([2, 3, 1, 1])
datasets = sorted(set(r.usable["dataset"].dropna()))
dataset = c1.selectbox("Dataset", ["All datasets", *datasets], key="abl_dataset")
available = [m for m in r.metrics if r.usable[m].notna().any()]
metrics = c2.multiselect("Metrics", available, default=default_metrics(r, name), key="abl_metrics")
arms = sorted(set(r.usable["arm"]))
baseline_default = "ce" if "ce" in arms else arms[0]
baseline = c3.selectbox("Baseline", arms, index=arms.index(baseline_default), key="abl_baseline")
method = c4.radio("CI", ["t", "bootstrap"], horizontal=True, key="abl_ci")
c5, c6 = st.columns([1, 3])
correction = c5.radio("Correction", ["holm", "bh"], horizontal=True, key="abl_correction",
                      format_func={"holm": "Holm", "bh": "Benjamini-Hochberg"}.get)
margin_text = c6.text_input("Equivalence margins (TOST), e.g. `test/acc=0.5` or `0.5`; comma-separated",
                            key="abl_margin")
if not metrics:
    st.info("Choose at least one metric.")
    st.stop()
margins = tuple(m.strip() for m in margin_text.split(",") if m.strip())
try:
    rep = common.report(root, db, stamp, name, tuple(metrics), baseline, 0.95, method, correction, margins)
except ValueError as exc:
    st.error(common.md(exc))
    st.stop()
shown = datasets if dataset == "All datasets" else [dataset]

for w in prose.chance_warnings(rep) + prose.small_n_warnings(rep):
    st.warning(common.md(w))      # sentences naming arms and datasets: data, shown as text

st.subheader("Ablation table")
table = rep.ablation_table()
cols = [c for c in table.columns if c.split(SEP)[0] in shown]
# One row per dataset and metric, one column per arm: as wide as the arms, never cut off on a
# laptop screen however many datasets and metrics there are (the report's table, transposed).
table = table[cols].T
table.index.name = "dataset · metric"
best = {c: rep.bold_arms(*c.split(SEP)) for c in cols}


def _bold(row: pd.Series) -> list[str]:
    return ["font-weight: bold" if arm in best[row.name] and v != "–" else "" for arm, v in row.items()]


st.dataframe(table.style.apply(_bold, axis=1), width="stretch")
st.caption(common.md(prose.caption(rep)))

st.subheader("Means with confidence intervals")
summary = rep.summary[rep.summary["dataset"].isin(shown)]
points = r.usable[r.usable["dataset"].isin(shown)]

for m in metrics:
    s = summary[summary["metric"] == m]
    if s.empty:
        continue
    p = points[["arm", "dataset", "seed", "trial_id", m]].rename(columns={m: "value"})
    cols = st.columns(len(shown))
    for col, ds in zip(cols, shown):
        sd, pd_ = s[s["dataset"] == ds], p[p["dataset"] == ds]
        if sd.empty:
            continue
        b = alt.Chart(sd).encode(x=alt.X("arm:N", sort=rep.arms, title=None))
        layer = alt.layer(
            b.mark_bar(opacity=0.75).encode(y=alt.Y("mean:Q", title=m), color=alt.Color("arm:N", legend=None),
                                            tooltip=["arm", "mean", "half_width", "n"]),
            b.mark_rule(color="black", strokeWidth=1.5).encode(y=alt.Y("ci_low:Q", title=m), y2="ci_high:Q"),
            b.mark_tick(color="black", size=18, thickness=1.5).encode(y=alt.Y("ci_low:Q", title=m)),
            b.mark_tick(color="black", size=18, thickness=1.5).encode(y=alt.Y("ci_high:Q", title=m)),
            alt.Chart(pd_).mark_circle(color="#444", size=28, opacity=0.8).encode(
                x=alt.X("arm:N", sort=rep.arms), y=alt.Y("value:Q", title=m), tooltip=["trial_id", "seed", "value"]),
        ).properties(title=alt.TitleParams([ds, m], anchor="start"), height=260)   # two lines: fits a narrow column
        col.altair_chart(layer, width="stretch")

st.subheader(f"Paired differences against {common.md(rep.baseline)}")
paired = rep.paired_table()
paired = paired[paired["dataset"].isin(shown)]
if paired.empty:
    st.info(f"No arm shares seeds with the baseline {common.md(rep.baseline)}.")
else:
    # Fit 1400 px without a scroll bar: the verdict next to the difference, columns that say
    # nothing here (all '–', e.g. Wilcoxon below n = 6) left out, the long notes as sentences below.
    notes = [n for n in dict.fromkeys(paired.pop("note")) if n]
    shown_cols = [c for c in paired.columns if not (paired[c].astype(str) == "–").all()]
    lead = [c for c in ("dataset", "metric", "comparison", "n", "mean diff") if c in shown_cols]
    order = lead + [c for c in ("verdict",) if c in shown_cols] + [c for c in shown_cols if c not in lead + ["verdict"]]
    st.dataframe(common.tidy(paired[order]), hide_index=True, width="stretch")
    for note in notes:
        st.caption(f"Note: {common.md(note)}")
    raw = rep.paired[rep.paired["dataset"].isin(shown)].copy()
    raw["comparison"] = raw["dataset"] + SEP + raw["arm"] + " − " + raw["baseline"]
    for m, g in raw.groupby("metric", sort=False):
        lim = difference_range(m)          # a difference of accuracies lies in [-100, 100]
        if lim is not None:
            g = g.assign(ci_low=g["ci_low"].clip(*lim), ci_high=g["ci_high"].clip(*lim))
        forest = alt.layer(
            alt.Chart(g).mark_rule(strokeWidth=2).encode(
                x=alt.X("ci_low:Q", title=f"{m}: arm − {rep.baseline}"), x2="ci_high:Q",
                y=alt.Y("comparison:N", title=None, axis=alt.Axis(labelLimit=320))),
            alt.Chart(g).mark_point(filled=True, size=80).encode(
                x=alt.X("mean_diff:Q", title=f"{m}: arm − {rep.baseline}"), y="comparison:N",
                tooltip=["comparison", "mean_diff", "ci_low", "ci_high", "p_t", "n"]),
            alt.Chart(g).mark_rule(strokeDash=[4, 4], color="gray").encode(x=alt.datum(0)),
        ).properties(height=70 + 36 * len(g))
        st.altair_chart(forest, width="stretch")
    st.caption(f"Mean difference with its {rep.pct} t interval, whichever CI the table uses (clipped to the difference's range); the dashed line "
               "is no difference. " + common.md(prose.correction_text(rep) + prose.mde_text(rep)))

st.subheader("Best configuration per metric")
bt = rep.best_table()
st.dataframe(common.tidy(bt[bt["dataset"].isin(shown)]), hide_index=True, width="stretch")
common.warn_damaged(r)
