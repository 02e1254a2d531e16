"""The validation split: a stratified share of the training split, fixed per experiment.

It is drawn with `data.val_seed` (never the trial seed), from the full training split before
`labels_per_class` / `train_subset` pick a trial's training images, so every trial of an
experiment (every seed, arm and searched value on the same dataset) validates on the same images
and never trains on them. It is carved before `data.shortcut` plants patches in the training
images, so validation images carry no patch (val/acc is clean accuracy).
"""
from __future__ import annotations

import torch

from .subsets import stratified_subset


def validation_indices(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx), both sorted, disjoint, covering range(len(labels)): round(fraction * N)
    examples for validation with class proportions kept (stratified_subset), drawn with `seed`.
    Raises ValueError if that leaves no validation or no training image."""
    n = len(labels)
    n_val = int(round(fraction * n))
    if fraction > 0 and not 0 < n_val < n:
        raise ValueError(f"data.val_fraction = {fraction} of {n} training images leaves {n_val} for validation "
                         f"and {n - n_val} for training; choose a fraction that leaves both non-empty.")
    val = stratified_subset(labels, n_val, torch.Generator().manual_seed(int(seed)))
    keep = torch.ones(n, dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val
