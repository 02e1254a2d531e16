"""Figures of a study experiment (docs/study/): arm means with 95% intervals, the shortcut probe,
and the saliency gallery of chosen arms side by side. Reads only; writes PNGs into OUT_DIR.

    python scripts/study_figures.py docs/study/results study-converged_2026-12-04 docs/study/figures/study-converged_2026-12-04

The numbers come from lico-tune's own results table and statistics (lico_tune.results: the same
final-epoch values and Student t intervals as `lico-tune report`), so figure and report agree.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imread

from lico_tune.results import aggregate, load_results

MEAN_METRICS = ["test/acc_ema", "saliency/gradcam/overall", "saliency/gradcam/pointing_mask",
                "saliency/gradcam/energy_mask"]
CHANCE = "eval/mask_area"   # a random map's expected pointing/energy score: the box's area share
PROBE_ARMS = ["ce", "ce_shortcut", "lico", "lico_shortcut"]
PROBE_ACC = ["shortcut/acc_clean", "shortcut/acc_patched", "shortcut/acc_shuffled"]
PROBE_SALIENCY = ["saliency/gradcam/patch_energy", "shortcut/patch_area"]
GALLERY_ARMS = ["ce", "lico", "lico_alive", "lico_paper_literal", "lico_released", "mm_only", "mm_stabilised", "ot_only"]


def _arm_order(arms) -> list[str]:
    """CE, the parts, LICO first (the study's reading order), then the variants alphabetically."""
    head = [a for a in ("ce", "mm_only", "ot_only", "lico", "lico_paper_literal", "lico_released") if a in arms]
    return head + sorted(a for a in arms if a not in head)


def means_figure(usable, path: str, wanted: list[str]) -> None:
    """One panel per (dataset, metric): each arm's mean and 95% t interval over seeds."""
    metrics = [m for m in wanted if m in usable.columns and usable[m].notna().any()]
    agg = aggregate(usable, metrics, by=("dataset", "arm"))
    datasets = sorted(agg["dataset"].unique())
    arms = _arm_order(agg["arm"].unique())
    fig = Figure(figsize=(4.2 * len(metrics), 0.28 * len(arms) * len(datasets) + 1.5))
    axes = fig.subplots(len(datasets), len(metrics), squeeze=False)
    for r, ds in enumerate(datasets):
        for c, m in enumerate(metrics):
            ax = axes[r][c]
            sub = agg[(agg["dataset"] == ds) & (agg["metric"] == m)].set_index("arm")
            if sub["mean"].isna().all():          # e.g. the pointing game on a dataset without boxes
                ax.axis("off")
                ax.text(0.5, 0.5, f"{m}\nnot measured on {ds}", ha="center", va="center", fontsize=8,
                        transform=ax.transAxes)
                continue
            ys = np.arange(len(arms))[::-1]
            for y, arm in zip(ys, arms):
                if arm not in sub.index:
                    continue
                row = sub.loc[arm]
                colour = "tab:red" if arm == "ce" else "tab:blue" if arm == "lico" else "0.3"
                ax.errorbar(row["mean"], y, xerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                            fmt="o", color=colour, ms=3, capsize=2, lw=1)
            if m.endswith("_mask") and CHANCE in usable.columns:
                ax.axvline(usable.loc[usable["dataset"] == ds, CHANCE].mean(), color="0.6", lw=0.8, ls="--")
            for ref, colour in (("ce", "tab:red"), ("lico", "tab:blue")):
                if ref in sub.index:
                    ax.axvline(sub.loc[ref, "mean"], color=colour, lw=0.6, ls=":")
            ax.set_yticks(ys, arms if c == 0 else [""] * len(arms), fontsize=7)
            ax.set_title(f"{ds} · {m}", fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            n = sorted(set(int(v) for v in sub["n"]))
            ax.set_xlabel(f"mean, 95% t interval (n = {', '.join(map(str, n))} seeds)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def probe_figure(usable, path: str) -> bool:
    """Accuracy on clean / patched / shuffled-patch test images and the saliency share on the
    patch, for the probe arms, per dataset. False when the experiment has no probe metrics."""
    cols = [m for m in PROBE_ACC + PROBE_SALIENCY if m in usable.columns and usable[m].notna().any()]
    sub = usable[usable["arm"].isin(PROBE_ARMS)]
    if not cols or sub.empty:
        return False
    agg = aggregate(sub, cols, by=("dataset", "arm"))
    datasets = sorted(agg["dataset"].unique())
    arms = [a for a in PROBE_ARMS if a in set(agg["arm"])]
    fig = Figure(figsize=(10, 3.2 * len(datasets)))
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    for r, ds in enumerate(datasets):
        for c, group in enumerate((PROBE_ACC, PROBE_SALIENCY)):
            ax, width = axes[r][c], 0.8 / len(group)
            for j, m in enumerate(group):
                cell = agg[(agg["dataset"] == ds) & (agg["metric"] == m)].set_index("arm").reindex(arms)
                x = np.arange(len(arms)) + j * width
                err = np.vstack([cell["mean"] - cell["ci_low"], cell["ci_high"] - cell["mean"]])
                ax.bar(x, cell["mean"], width, yerr=err, capsize=2, label=m.split("/")[-1])
            ax.set_xticks(np.arange(len(arms)) + 0.4 - width / 2, arms, fontsize=8)
            ax.set_title(f"{ds} · {'accuracy (%)' if c == 0 else 'Grad-CAM energy on the patch vs its area'}",
                         fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def gallery_figure(usable, dataset: str, seed: int, path: str, method: str = "gradcam") -> bool:
    """The gallery overlays of one seed's trials, one row per arm: the same test images, side by
    side. False when no trial of that dataset and seed has a gallery."""
    rows = []
    for arm in GALLERY_ARMS:
        t = usable[(usable["arm"] == arm) & (usable["dataset"] == dataset) & (usable["seed"] == seed)]
        if t.empty or not isinstance(t.iloc[0]["gallery"], str):
            continue
        folder = os.path.join(t.iloc[0]["gallery"], method)
        if os.path.isdir(folder):
            rows.append((arm, [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".png")]))
    rows = [(a, files) for a, files in rows if files]
    if not rows:
        return False
    cols = max(len(f) for _, f in rows)
    fig = Figure(figsize=(1.9 * cols + 1.2, 1.9 * len(rows)))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (arm, files) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(files):
                ax.imshow(imread(files[c]))
            if c == 0:
                ax.set_ylabel(arm, fontsize=8)
    fig.suptitle(f"{method} overlays, {dataset}, seed {seed}: the same test images for every arm", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("experiment")
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0, help="the seed whose galleries are drawn (default 0)")
    ap.add_argument("--metric", action="append", default=None,
                    help=f"a metric of the means figure, repeatable (default: {', '.join(MEAN_METRICS)}, where reported)")
    args = ap.parse_args(argv)
    res = load_results(args.root, use_catalog=False).experiment(args.experiment)
    usable = res.usable
    if usable.empty:
        print(f"no finished trials in {args.experiment} under {args.root}", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    written = [os.path.join(args.out_dir, "means.png")]
    means_figure(usable, written[0], args.metric or MEAN_METRICS)
    probe = os.path.join(args.out_dir, "shortcut_probe.png")
    if probe_figure(usable, probe):
        written.append(probe)
    for ds in sorted(usable["dataset"].unique()):
        p = os.path.join(args.out_dir, f"gallery_{ds}_seed{args.seed}.png")
        if gallery_figure(usable, ds, args.seed, p):
            written.append(p)
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
