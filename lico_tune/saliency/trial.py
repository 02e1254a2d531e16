"""Saliency in every trial: the fixed test images, the metrics, and the gallery."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..keys import MASK_AREA, SHORTCUT_KEYS
from ..layout import GALLERY
from .evaluate import Protocol, Settings, evaluate_saliency, metric_tails
from .gallery import write_gallery
from .localisation import boxes_to_masks
from .shortcut import RENAMED as SHORTCUT_RENAMED, shortcut_metrics


def fixed_test_indices(test_set, n: int, seed: int) -> torch.Tensor:
    """Indices of the same n test images for every trial with the same dataset and eval.seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(test_set), generator=g)[:n]


def fixed_test_images(test_set, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same n test images for every trial with the same dataset and eval.seed:
    (x (n, C, H, W) normalised, y (n,))."""
    return test_set.batch(fixed_test_indices(test_set, n, seed), augment=False)


def saliency_metric_keys(cfg, data) -> list[str]:
    """The keys `trial_saliency(classifier, data, cfg, ...)` returns, known before training (a trial
    reports them from its first epoch, empty until computed: Ray fixes progress.csv's columns at the
    first report). Derived from the saliency metrics table (evaluate.METRICS) under the trial's Settings;
    tests/saliency/test_saliency_protocols.py checks this list against trial_saliency's output."""
    idx = fixed_test_indices(data.test, cfg.n_images, cfg.seed)
    methods = list(cfg.cams) if cfg.n_images else []
    keys: list[str] = []
    if getattr(data, "shortcut", None) is not None:
        keys += [k for k in SHORTCUT_KEYS if k != "shortcut/patch_area"]
        if methods and len(idx):
            keys.append("shortcut/patch_area")
            keys += [f"saliency/{m}/{t}" for m in methods for t in SHORTCUT_RENAMED.values()]
    if not methods:
        return keys
    boxes = getattr(data.test, "boxes", None)
    masks = bool(cfg.boxes and boxes is not None)
    n_classes = len(torch.unique(data.test.batch(idx, augment=False)[1]))
    if masks:
        keys.append(MASK_AREA)
    settings = Settings(Protocol.of(cfg), masks=masks, grid=not masks, n_classes=n_classes)
    keys += [f"saliency/{m}/{t}" for m in methods for t in metric_tails(settings)]
    return list(dict.fromkeys(keys))


def trial_saliency(classifier: nn.Module, data, cfg, out_dir: str | Path) -> dict[str, float]:
    """Evaluate cfg.cams (an EvalConfig) on the fixed test images and write the gallery into
    out_dir/gallery. Returns flat metrics saliency/<method>/<metric>, and shortcut/* when the
    data has a shortcut probe (accuracies even with n_images 0). On a dataset with boxes (and
    cfg.boxes) the pointing game and energy are scored on the boxes instead of 2x2 grids."""
    device = next(classifier.parameters()).device
    idx = fixed_test_indices(data.test, cfg.n_images, cfg.seed)
    methods = cfg.cams if cfg.n_images else []
    metrics: dict[str, float] = {}
    probe = getattr(data, "shortcut", None)
    if probe is not None:
        metrics.update(shortcut_metrics(classifier, probe, idx, methods, Protocol.of(cfg)))
    if not methods:
        return metrics
    x, y = data.test.batch(idx, augment=False)
    x, y = x.to(device), y.to(device)
    boxes = getattr(data.test, "boxes", None)
    masks = boxes_to_masks(boxes[idx], *x.shape[-2:]) if cfg.boxes and boxes is not None else None
    result = evaluate_saliency(classifier, x, y, cfg.cams, Protocol.of(cfg), masks=masks)
    metrics.update(result.metrics)
    if cfg.gallery_images:
        k = min(cfg.gallery_images, len(x))
        write_gallery(classifier, x[:k], y[:k], str(Path(out_dir) / GALLERY), cfg.cams, Protocol.of(cfg),
                      class_names=data.class_names, mean=data.mean, std=data.std)
    return metrics


def val_saliency(classifier: nn.Module, val_set, cfg) -> dict[str, float]:
    """cfg.cams on eval.n_images fixed validation images (the same for every trial of an experiment:
    the split and eval.seed are fixed), as val/saliency/<method>/<metric>: what a search may select
    on. The same protocol as the test images' metrics, without the gallery, the sanity check and
    MPRT (those describe the model, not a choice among models)."""
    if val_set is None or not cfg.n_images or not cfg.cams:
        return {}
    device = next(classifier.parameters()).device
    idx = fixed_test_indices(val_set, cfg.n_images, cfg.seed)
    x, y = val_set.batch(idx, augment=False)
    boxes = getattr(val_set, "boxes", None)
    masks = boxes_to_masks(boxes[idx], *x.shape[-2:]) if cfg.boxes and boxes is not None else None
    protocol = dataclasses.replace(Protocol.of(cfg), sanity=False, mprt=())
    result = evaluate_saliency(classifier, x.to(device), y.to(device), cfg.cams, protocol, masks=masks)
    return {f"val/{k}": v for k, v in result.metrics.items()}
