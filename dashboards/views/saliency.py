"""Saliency: the same test images side by side for the chosen arms or trials (an overlay per
method), their insertion/deletion curves, and the pointing-game, SES and sanity-check scores."""
import json

import altair as alt
import pandas as pd
import streamlit as st

import common
from lico_tune.storage import join

res, root, db, stamp = common.page("Saliency", "Every trial explains the same fixed test images "
                                   "(eval.seed), so trials can be compared image by image.")
name = common.pick_experiment(res, "saliency")
r = res.experiment(name)
t = r.trials[r.trials["status"] == "finished"]
if t.empty:
    st.info("No trial of this experiment has finished yet: saliency is evaluated at the end of each trial.")
    st.stop()

sal_metrics = [m for m in r.metrics if m.startswith("saliency/")]
methods = list(dict.fromkeys(m.split("/")[1] for m in sal_metrics))
def image_pixels(trials) -> int:
    """Pixels per test image of these trials (0 when unknown), from a gallery's curves.json: its
    deletion curve removes pixels_per_step pixels per step until the image is gone."""
    for g in trials["gallery"]:
        if isinstance(g, str) and g:
            raw = common.read_bytes(join(g, "curves.json"), stamp)
            try:
                c = json.loads(raw) if raw else {}
            except ValueError:
                continue
            if c.get("n_steps") and c.get("pixels_per_step"):
                return int(c["n_steps"]) * int(c["pixels_per_step"])
    return 0


by = st.radio("Compare", ["Arms", "Trials"], horizontal=True, key="sal_by")
if by == "Arms":
    c1, c2, c3 = st.columns([2, 1, 3])
    datasets = sorted(set(t["dataset"].dropna()))
    wanted = st.query_params.get("dataset")
    if wanted not in datasets:       # open on the largest images: 8 x 8 px digits show little
        wanted = max(datasets, key=lambda ds: image_pixels(t[t["dataset"] == ds]))
    dataset = c1.selectbox("Dataset", datasets, index=datasets.index(wanted), key="sal_dataset")
    td = t[t["dataset"] == dataset]
    seeds = sorted(set(td["seed"].dropna()), key=str)
    seed = c2.selectbox("Seed", seeds, key="sal_seed") if seeds else None
    arms = sorted(set(td["arm"]))
    chosen = c3.multiselect("Arms", arms, default=arms, key="sal_arms")
    sel = td[td["arm"].isin(chosen) & ((td["seed"] == seed) if seed is not None else True)]
    sel = sel.drop_duplicates("arm").set_index("arm").loc[[a for a in chosen if a in set(sel["arm"])]].reset_index()
else:
    labels = {common.trial_label(x): x["trial_id"] for _, x in t.iterrows()}
    picked = st.multiselect("Trials", list(labels), default=list(labels)[:2], key="sal_trials")
    sel = t[t["trial_id"].isin([labels[p] for p in picked])]
    if sel["dataset"].nunique() > 1:
        st.warning("The chosen trials use different datasets: their images differ.")
if sel.empty:
    st.info("Choose at least one arm or trial.")
    st.stop()


def gallery_of(trial) -> tuple[list[str], dict]:
    """(methods with overlays, curves.json) of a trial's gallery ([], {} when it has none)."""
    g = trial["gallery"]
    if not isinstance(g, str) or not g:
        return [], {}
    names = common.list_dir(g, stamp)
    raw = common.read_bytes(join(g, "curves.json"), stamp) if "curves.json" in names else None
    try:
        curves = json.loads(raw) if raw else {}
    except ValueError:
        curves = {}
    return [n for n in names if "." not in n], curves


galleries = {x["trial_id"]: gallery_of(x) for _, x in sel.iterrows()}
gmethods = list(dict.fromkeys(m for ms, _ in galleries.values() for m in ms))
all_methods = list(dict.fromkeys(gmethods + methods))
if not all_methods:
    st.info("These trials report no saliency (eval.cams empty or eval.n_images 0).")
    st.stop()
method = st.selectbox("Method", all_methods, key="sal_method")
tag = {x["trial_id"]: (x["arm"] if by == "Arms" else f"{x['trial_id']} ({x['arm']})") for _, x in sel.iterrows()}

st.subheader("Test images")
with_gallery = [x for _, x in sel.iterrows() if method in galleries[x["trial_id"]][0]]
if not with_gallery:
    st.info("No chosen trial has overlays for this method (the gallery is written at the end of a trial when "
            "eval.gallery_images > 0).")
else:
    n_max = max(len(galleries[x["trial_id"]][1].get("images", [])) or 1 for x in with_gallery)
    n = st.slider("Images", 1, max(2, n_max), min(6, n_max), key="sal_n") if n_max > 1 else 1
    st.caption("One row per " + ("arm" if by == "Arms" else "trial") + ", one column per test image; under each "
               "image: its class, the prediction and its insertion / deletion AUC.")
    for x in with_gallery:
        ms, curves = galleries[x["trial_id"]]
        st.markdown(f"**{common.md(tag[x['trial_id']])}**")
        cols = st.columns(n)
        for i, col in enumerate(cols):
            png = common.read_bytes(join(x["gallery"], method, f"{i:03d}.png"), stamp)
            images = curves.get("images") or []
            info = images[i] if i < len(images) else {}
            m = (info.get("methods") or {}).get(method, {})
            cap = (f"{info.get('label_name', '?')} → {info.get('prediction_name', '?')}; ins "
                   f"{m.get('insertion_auc', float('nan')):.3f}, del {m.get('deletion_auc', float('nan')):.3f}"
                   if info else "")
            if png:
                col.image(png, caption=common.md(cap), width="stretch")
            else:
                col.caption(f"(no image {i})")

st.subheader("Insertion and deletion curves")
rows = []
for x in with_gallery:
    curves = galleries[x["trial_id"]][1]
    frac = curves.get("fraction") or []
    for kind in ("insertion", "deletion"):
        ys = [im["methods"][method][f"{kind}_curve"] for im in curves.get("images", [])
              if method in im.get("methods", {})]
        if not ys or not frac:
            continue
        mean = pd.DataFrame(ys).mean(axis=0).tolist()
        rows += [{"trial": tag[x["trial_id"]], "curve": kind, "fraction": f, "p": p} for f, p in zip(frac, mean)]
if rows:
    d = pd.DataFrame(rows)
    # Colour tells the arms/trials apart, dash and marker shape the curve: the legend shows a solid
    # line with circles for insertion and a dashed one with squares for deletion.
    st.altair_chart(alt.Chart(d).mark_line(point=alt.OverlayMarkDef(filled=True, size=40)).encode(
        x=alt.X("fraction:Q", title="fraction of pixels inserted / deleted"),
        y=alt.Y("p:Q", title="p(target class), mean over the gallery images", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("trial:N", title=by[:-1]),
        strokeDash=alt.StrokeDash("curve:N", scale=alt.Scale(domain=["insertion", "deletion"],
                                                              range=[[1, 0], [6, 3]]), title="curve"),
        shape=alt.Shape("curve:N", scale=alt.Scale(domain=["insertion", "deletion"], range=["circle", "square"]),
                        title="curve"),
        tooltip=["trial", "curve", "fraction", "p"]).properties(height=320), width="stretch")
    st.caption("Insertion (blur substrate) should rise fast and deletion (zero substrate) fall fast; "
               "the report's AUCs are over all eval.n_images images, these curves over the gallery's.")
else:
    st.info("No insertion/deletion curves for these trials (their gallery has no curves.json).")

st.subheader("Scores")
cols = [m for m in sal_metrics if m.split("/")[1] == method and not m.endswith("/seconds")]
if cols:
    table = sel[["trial_id", "arm", "dataset", "seed", *cols]].rename(columns={c: c.split("/")[-1] for c in cols})
    st.dataframe(common.tidy(table), hide_index=True, width="stretch")
    st.caption("insertion/deletion: AUC (higher/lower is better); overall = insertion − deletion; pointing, energy: "
               "2×2 grid pointing game (chance 0.25); ses: salience equivariance (higher is better); sanity_top / "
               "sanity_full: Spearman correlation of the maps after randomising the top / all layers (should fall).")
    if not any(c.endswith(("/sanity_top", "/sanity_full")) for c in cols):
        st.caption("No sanity-check scores: set eval.sanity: true to run the cascading randomisation test.")
else:
    st.info(f"The chosen trials report no saliency/{common.md(method)}/\\* metrics.")
