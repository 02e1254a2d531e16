"""Pictures for people: explain_figure (one matplotlib figure) and write_gallery (a directory).

matplotlib is imported lazily and only through matplotlib.figure.Figure (Agg canvas): no pyplot,
no global backend switch, safe in Ray workers and tests.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .evaluate import Protocol, compute_maps
from .faithfulness import insertion_deletion
from .methods import make_saliency_fn
from ._util import as_targets, predict


def to_display(images: Tensor, mean=None, std=None) -> np.ndarray:
    """Normalised (N, C, H, W) -> (N, H, W, C) floats in [0, 1] (un-normalised with mean/std if
    given, else min-max per image)."""
    x = images.detach().float().cpu()
    if mean is not None and std is not None:
        c = x.shape[1]
        x = x * torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1).expand(1, c, 1, 1) \
            + torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).expand(1, c, 1, 1)
    else:
        lo = x.flatten(1).min(1).values.view(-1, 1, 1, 1)
        hi = x.flatten(1).max(1).values.view(-1, 1, 1, 1)
        x = (x - lo) / (hi - lo).clamp_min(1e-12)
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _name(i: int, class_names) -> str:
    return class_names[i] if class_names is not None and 0 <= i < len(class_names) else str(i)


def overlay(image: np.ndarray, sal: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """(H, W, C) image in [0, 1] blended with a colour-mapped (H, W) map in [0, 1] -> (H, W, 3)."""
    from matplotlib import colormaps

    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    heat = colormaps[cmap](np.clip(sal, 0, 1))[..., :3]
    return (1 - alpha) * rgb + alpha * heat


def explain_figure(images: Tensor, maps: Tensor | dict[str, Tensor], curves: dict, labels, preds=None, *,
                   class_names: Sequence[str] | None = None, mean=None, std=None, path: str | None = None,
                   method: str = "saliency"):
    """A figure with one row per image: the image (title: true / predicted class), one overlay per
    method with a colour bar, and the insertion (solid) / deletion (dashed) curves with their AUCs
    in the legend. maps: (N, H, W) for one method (named `method`) or {method: (N, H, W)}; curves:
    the insertion_deletion result, or {method: result}. Saved as PNG to path if given. Returns the
    matplotlib Figure."""
    from matplotlib.figure import Figure

    if not isinstance(maps, dict):
        maps, curves = {method: maps}, {method: curves}
    methods = list(maps)
    labels = as_targets(labels, len(images))
    preds = None if preds is None else as_targets(preds, len(images))
    shown = to_display(images, mean, std)
    n, m = len(images), len(methods)
    fig = Figure(figsize=(3.0 * (m + 1) + 4.2, 3.0 * n), dpi=100, layout="constrained")
    axes = fig.subplots(n, m + 2, squeeze=False,
                        gridspec_kw={"width_ratios": [1.0] + [1.15] * m + [1.5]})
    colours = [f"C{i}" for i in range(m)]
    for i in range(n):
        img = shown[i]
        title = f"true: {_name(int(labels[i]), class_names)}"
        if preds is not None:
            title += f"\npred: {_name(int(preds[i]), class_names)}"
        ax = axes[i, 0]
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                  vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        for j, meth in enumerate(methods):
            ax = axes[i, j + 1]
            sal = maps[meth][i].detach().cpu().float().numpy()
            ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            im = ax.imshow(sal, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            ax.set_title(f"{meth}\ntrue: {_name(int(labels[i]), class_names)}"
                         + (f" | pred: {_name(int(preds[i]), class_names)}" if preds is not None else ""),
                         fontsize=8)
            ax.axis("off")
        ax = axes[i, -1]
        for j, meth in enumerate(methods):
            c = curves[meth]
            for mode, style in (("insertion", "-"), ("deletion", "--")):
                if f"{mode}_curve" in c:
                    y = c[f"{mode}_curve"][i].cpu().numpy()
                    x = np.linspace(0, 1, len(y))
                    ax.plot(x, y, style, color=colours[j],
                            label=f"{meth} {mode[:3]}. AUC {float(c[mode][i]):.3f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("fraction of steps (pixels changed)", fontsize=8)
        ax.set_ylabel("p(target class)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best")
    if path is not None:
        fig.savefig(path)
    return fig


def write_gallery(model: nn.Module, images: Tensor, labels, out_dir: str, methods: Sequence[str], protocol: Protocol, *,
                  class_names: Sequence[str] | None = None, mean=None, std=None, target_layer=None,
                  blur_kernel_size: int | None = None, insertion_substrate: str = "blur",
                  deletion_substrate: str = "zeros", min_size: int = 128) -> dict[str, list[str]]:
    """Explain a few images with each method under `protocol` (the spec's eval section: target,
    batch size, insertion/deletion step and blur, RISE masks) and write into out_dir:
        <method>/<i>.png    the overlay (nearest-upscaled to at least min_size px)
        explain.png         explain_figure over all methods
        curves.npz          <method>/insertion_curve, .../deletion_curve, .../insertion, .../deletion,
                            .../maps, labels, predictions, targets, fraction
        curves.json         the same curves and AUCs per image, with class names
    Returns {"overlays": [...], "figure": [...], "data": [...]} of written paths."""
    from matplotlib.image import imsave

    target, batch_size = protocol.target, protocol.batch_size
    pixels_per_step, blur_sigma = protocol.pixels_per_step, protocol.blur_sigma
    os.makedirs(out_dir, exist_ok=True)
    labels = as_targets(labels, len(images))
    preds = predict(model, images, batch_size)
    targets = labels if target == "label" else preds
    shown = to_display(images, mean, std)
    h = images.shape[-2]
    scale = max(1, -(-min_size // h))
    maps, curves = {}, {}
    written: dict[str, list[str]] = {"overlays": [], "figure": [], "data": []}
    for method in methods:
        fn = make_saliency_fn(model, method, target_layer=target_layer, batch_size=batch_size,
                              rise_n_masks=protocol.rise_n_masks)
        maps[method] = compute_maps(fn, images, targets, batch_size)
        curves[method] = insertion_deletion(model, images, maps[method], targets, pixels_per_step, batch_size,
                                            blur_sigma, blur_kernel_size, insertion_substrate=insertion_substrate,
                                            deletion_substrate=deletion_substrate)
        os.makedirs(os.path.join(out_dir, method), exist_ok=True)
        for i in range(len(images)):
            rgb = overlay(shown[i], maps[method][i].numpy())
            rgb = np.kron(rgb, np.ones((scale, scale, 1)))  # nearest upscaling
            p = os.path.join(out_dir, method, f"{i:03d}.png")
            imsave(p, np.clip(rgb, 0, 1))
            written["overlays"].append(p)
    fig_path = os.path.join(out_dir, "explain.png")
    explain_figure(images, maps, curves, labels, preds, class_names=class_names, mean=mean, std=std, path=fig_path)
    written["figure"].append(fig_path)

    arrays = {"labels": labels.numpy(), "predictions": preds.numpy(), "targets": targets.numpy()}
    records = []
    for i in range(len(images)):
        rec = {"index": i, "label": int(labels[i]), "label_name": _name(int(labels[i]), class_names),
               "prediction": int(preds[i]), "prediction_name": _name(int(preds[i]), class_names),
               "target": int(targets[i]), "methods": {}}
        for method in methods:
            c = curves[method]
            rec["methods"][method] = {
                "insertion_auc": float(c["insertion"][i]), "deletion_auc": float(c["deletion"][i]),
                "overall": float(c["overall"][i]),
                "insertion_curve": [round(float(v), 6) for v in c["insertion_curve"][i]],
                "deletion_curve": [round(float(v), 6) for v in c["deletion_curve"][i]]}
        records.append(rec)
    first = curves[methods[0]] if methods else {"fraction": torch.zeros(0), "pixels_per_step": 0, "n_steps": 0}
    arrays["fraction"] = first["fraction"].numpy()
    for method in methods:
        for k in ("insertion_curve", "deletion_curve", "insertion", "deletion"):
            arrays[f"{method}/{k}"] = curves[method][k].numpy()
        arrays[f"{method}/maps"] = maps[method].numpy()
    npz = os.path.join(out_dir, "curves.npz")
    np.savez_compressed(npz, **arrays)
    js = os.path.join(out_dir, "curves.json")
    with open(js, "w") as f:
        json.dump({"target": target, "insertion_substrate": insertion_substrate,
                   "deletion_substrate": deletion_substrate, "blur_sigma": blur_sigma,
                   "pixels_per_step": first["pixels_per_step"], "n_steps": first["n_steps"],
                   "x": "step / n_steps (AUC abscissa)", "fraction": first["fraction"].tolist(),
                   "images": records}, f, indent=1)
    written["data"] += [npz, js]
    return written
