"""Saliency in every trial: the fixed test images, the metrics, and the gallery."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..layout import GALLERY
from .evaluate import evaluate_saliency
from .gallery import write_gallery


def fixed_test_images(test_set, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same n test images for every trial with the same dataset and eval.seed:
    (x (n, C, H, W) normalised, y (n,))."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(test_set), generator=g)[:n]
    return test_set.batch(idx, augment=False)


def trial_saliency(classifier: nn.Module, data, cfg, out_dir: str | Path) -> dict[str, float]:
    """Evaluate cfg.cams (an EvalConfig) on the fixed test images and write the gallery into
    out_dir/gallery. Returns flat metrics saliency/<method>/<metric>."""
    if cfg.n_images == 0 or not cfg.cams:
        return {}
    device = next(classifier.parameters()).device
    x, y = fixed_test_images(data.test, cfg.n_images, cfg.seed)
    x, y = x.to(device), y.to(device)
    options = dict(target=cfg.target, batch_size=cfg.batch_size, pixels_per_step=cfg.pixels_per_step,
                   blur_sigma=cfg.blur_sigma)
    result = evaluate_saliency(classifier, x, y, cfg.cams, n_grids=cfg.n_grids, ses=cfg.ses,
                               sanity=cfg.sanity, sanity_max_layers=cfg.sanity_max_layers,
                               rise_n_masks=cfg.rise_n_masks, precision=cfg.precision, **options)
    if cfg.gallery_images:
        k = min(cfg.gallery_images, len(x))
        write_gallery(classifier, x[:k], y[:k], str(Path(out_dir) / GALLERY), cfg.cams,
                      class_names=data.class_names, mean=data.mean, std=data.std,
                      rise_n_masks=cfg.rise_n_masks, **options)
    return result.metrics
