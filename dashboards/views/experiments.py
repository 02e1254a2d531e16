"""Experiments: every experiment of the results root with its state (running, finished,
interrupted), status counts, best validation metrics, trials (with a filter) and errors, and its spec.
Nothing here is selected on test numbers: the headline is the best validation value (the Ablations
page gives means, intervals and verdicts over seeds)."""
import pandas as pd
import streamlit as st
import yaml

import common
from lico_tune.layout import ERROR_FILE, RUN_FILE
from lico_tune.results import status_counts
from lico_tune.results.report import default_metrics

NODE_CHARS = 10      # of Ray's 56-hex-digit node id: enough to tell a cluster's nodes apart

res, root, db, stamp = common.page("Experiments", "Every Ray Tune experiment under the results root.")

rows = []
for _, e in res.experiments.iterrows():
    t = res.trials[res.trials["experiment"] == e["experiment"]]
    c = status_counts(t)
    row = {"experiment": e["experiment"], "created": str(e["created"] or "")[:16].replace("T", " "),
           "state": e.get("run_state") or common.MISSING, "trials": len(t),
           "finished": c.get("finished", 0), "running": c.get("running", 0) + c.get("pending", 0),
           "interrupted": c.get("interrupted", 0), "orphaned": c.get("orphaned", 0), "errored": c.get("errored", 0),
           "damaged": int(t["damaged"].sum())}
    # A best validation accuracy per dataset (never test: that would select on it; a number picked
    # across datasets compares nothing).
    if "val/acc" in t.columns:
        u = t[t["usable"]]
        for ds, g in u.groupby("dataset"):
            acc = pd.to_numeric(g["val/acc"], errors="coerce").dropna()
            row[f"best val/acc · {ds}"] = acc.max() if not acc.empty else None
    rows.append(row)
st.dataframe(common.tidy(pd.DataFrame(rows)), hide_index=True, width="stretch")

name = common.pick_experiment(res, "experiments")
r = res.experiment(name)
t = r.trials
e = r.experiments.iloc[0]
counts = status_counts(t)

st.header(name)
if e.get("run_state") == "interrupted":
    st.warning(f"**Interrupted** ({common.md(e.get('run_note'))}): continue it with `lico-tune resume` and the "
               f"experiment directory, {common.md(e['path'])}.")
elif e.get("run_state") == "running":
    st.info(f"**Running** ({common.md(e.get('run_note'))}). *Live update* in the sidebar follows it.")
cols = st.columns(6)
for col, status in zip(cols, ("finished", "running", "pending", "errored", "interrupted", "orphaned")):
    col.metric(status.capitalize(), counts.get(status, 0))

metrics = default_metrics(r, name)
headline = [m for m in metrics if m.startswith("val/")]        # what a search may select on
if headline and not r.usable.empty:
    st.subheader("Best validation metrics per dataset")
    st.caption("One trial each (one seed), chosen on validation numbers, never on test ones: the Ablations page "
               "gives means, intervals and verdicts over seeds.")
    for ds, u in r.usable.groupby("dataset"):
        st.markdown(f"**{common.md(ds)}**")
        cols = st.columns(min(4, len(headline)))
        for i, m in enumerate(headline):
            mode = r.mode(m, name)
            vals = pd.to_numeric(u[m], errors="coerce").dropna()
            if vals.empty:
                continue
            best = u.loc[vals.idxmax() if mode == "max" else vals.idxmin()]
            cols[i % len(cols)].metric(common.md(f"{ds} · {m} ({mode})"), f"{best[m]:.4g}",
                                       help=common.md(f"trial {best['trial_id']}, arm {best['arm']}, seed {best['seed']}"))
elif metrics and not r.usable.empty:
    st.info("This experiment reports no validation metric (data.val_fraction 0), so nothing is headlined here: "
            "picking the best test number would select on test. See the Ablations page's verdicts.")

common.warn_damaged(r)

errored = t[t["status"] == "errored"]
if not errored.empty:
    st.subheader(f"Errors ({len(errored)})")
    for _, x in errored.iterrows():
        st.error(f"**{common.md(x['trial_id'])}** (arm {common.md(x['arm'])}, dataset {common.md(x['dataset'])}, "
                 f"seed {common.md(x['seed'])}): {common.md(x['error'] or 'no reason recorded')}")
        with st.expander(f"Traceback of {common.md(x['trial_id'])}"):
            rec = common.trial_record(root, db, stamp, name, x["trial_id"])
            st.code((rec or {}).get("error_detail") or f"(no {ERROR_FILE})", language="text")

st.subheader("Trials")
# Fit 1400 px: the grid axes data.name and train.seed repeat the dataset and seed columns, and
# an error or warnings column with nothing in it says nothing.
# Where each trial ran (a cluster: which host, which Ray node), from its provenance.json.
show = ["trial_id", "arm", "dataset", "seed", "status", "n_epochs",
        *[c for c in ("host", "node") if c in t.columns and t[c].notna().any()],
        *[p for p in r.params.get(name, []) if p not in ("data.name", "train.seed")],
        *[m for m in metrics if m in t.columns],
        *[c for c in ("error", "warnings") if c in t.columns and t[c].astype(bool).any()]]
shown = common.trial_filter(t, [m for m in metrics if m in t.columns], key="exp")
shown = shown.assign(node=shown["node"].str[:NODE_CHARS]) if "node" in shown.columns else shown
st.dataframe(common.tidy(shown[[c for c in dict.fromkeys(show) if c in t.columns]]), hide_index=True, width="stretch")
if "node" in show:
    st.caption(f"host: the machine a trial ran on; node: the first {NODE_CHARS} characters of its Ray node id "
               f"(the Trial page's provenance has it whole).")

st.subheader("Spec")
if isinstance(e["spec"], dict):
    st.caption("The fields that differ from the defaults:")
    st.code(yaml.safe_dump(common.compact_spec(e["spec"]), sort_keys=False), language="yaml")
    with st.expander("The resolved spec, every field"):
        st.code(yaml.safe_dump(e["spec"], sort_keys=False), language="yaml")
    st.caption(f"lico-tune {common.md(e['lico_tune_version'] or '?')}, git {common.md(e['git_sha'] or '?')}; "
               f"experiment directory {common.md(e['path'])}")
else:
    st.info(f"This experiment has no {RUN_FILE} (it was not started by `lico-tune run`): no spec to show.")
