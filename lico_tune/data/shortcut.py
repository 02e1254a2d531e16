"""The shortcut probe: a small class-coded patch planted in a fraction of the training images.

Class k's patch is a size x size square of value `value` (uint8) at slot k: slots lie on a grid in
the left half of the image, `margin` px (the random crop's pad) from the edges, so that a random
crop keeps the patch inside the image and a horizontal flip sends it to the right half, where no
class has a slot (the position stays class-coded). Without augmentation, region 'whole' spreads
the grid over the whole width without a margin (room for larger patches: 10 of 5 px fit 28 px).
Which training images get a patch is drawn from shortcut.seed alone (the same for every trial
seed, exactly round(fraction * N) images).

At test, three versions of the test split are built (the probe):
  clean     no patch;
  patched   every image carries its own class's patch;
  shuffled  every image carries the patch of another class ((y + r) mod K, r uniform in 1..K-1).
The test split the trial reports as test/acc is `clean` (shortcut.test = absent) or `shuffled`.
A model that learned the shortcut scores high on patched and low on shuffled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import TrialConfigError
from .imageset import ImageSet


@dataclass
class ShortcutProbe:
    clean: ImageSet
    patched: ImageSet
    shuffled: ImageSet
    patched_boxes: torch.Tensor          # (N, 4) the patch box in each patched image
    shuffled_boxes: torch.Tensor         # (N, 4) the (wrong-class) patch box in each shuffled image
    train_planted: torch.Tensor          # (N_train,) bool: which training images got a patch
    slots: torch.Tensor                  # (K, 2) top, left of each class's patch


def patch_slots(height: int, width: int, size: int, num_classes: int, margin: int,
                region: str = "left_half") -> torch.Tensor:
    """(K, 2) int64 (top, left) of each class's patch: a column-major grid in the left half (or the
    whole width), `margin` px from the top, bottom and left edges, 1 px apart. TrialConfigError
    when K do not fit."""
    usable = height - 2 * margin
    rows = max(0, (usable + 1) // (size + 1))
    cols = math.ceil(num_classes / rows) if rows else math.inf
    room = width // 2 if region == "left_half" else width - margin
    if rows == 0 or margin + cols * (size + 1) - 1 > room:
        where = "the left half" if region == "left_half" else "the whole"
        hint = ("" if region == "whole" else
                " or, without data.augment, set data.shortcut.region: whole")
        raise TrialConfigError(
            f"data.shortcut: {num_classes} patches of size {size} do not fit in {where} of a "
            f"{height} x {width} image with a {margin} px margin; lower data.shortcut.size{hint}, or "
            f"use a larger data.image_size.")
    k = torch.arange(num_classes)
    top = margin + (k % rows) * (size + 1)
    left = margin + (k // rows) * (size + 1)
    return torch.stack([top, left], 1)


def boxes_for(codes: torch.Tensor, slots: torch.Tensor, size: int) -> torch.Tensor:
    """(N,) class codes -> (N, 4) boxes (x0, y0, x1, y1) of their patches."""
    top, left = slots[codes, 0], slots[codes, 1]
    return torch.stack([left, top, left + size, top + size], 1)


def plant(images: torch.Tensor, codes: torch.Tensor, where: torch.Tensor, slots: torch.Tensor,
          size: int, value: int) -> torch.Tensor:
    """A copy of uint8 images (N, C, H, W) with the patch of class codes[i] planted where where[i]."""
    out = images.clone()
    idx = where.nonzero().flatten()                                          # (n,)
    if len(idx) == 0:
        return out
    top, left = slots[codes[idx], 0], slots[codes[idx], 1]
    rows = (top[:, None] + torch.arange(size))[:, :, None]                   # (n, s, 1)
    cols = (left[:, None] + torch.arange(size))[:, None, :]                  # (n, 1, s)
    for c in range(images.shape[1]):
        out[idx[:, None, None], c, rows, cols] = value
    return out


def build(train: ImageSet, test: ImageSet, cfg, num_classes: int, margin: int) -> tuple[ImageSet, ShortcutProbe]:
    """Plant the patches of data.shortcut `cfg` in the training set; build the test probe."""
    _, _, h, w = train.images.shape
    slots = patch_slots(h, w, cfg.size, num_classes, margin, cfg.region)
    g = torch.Generator().manual_seed(int(cfg.seed))
    n = len(train)
    chosen = torch.randperm(n, generator=g)[:round(cfg.fraction * n)]
    planted = torch.zeros(n, dtype=torch.bool)
    planted[chosen] = True
    train = train.with_images(plant(train.images, train.labels.cpu(), planted, slots, cfg.size, cfg.value))
    y = test.labels.cpu()
    every = torch.ones(len(y), dtype=torch.bool)
    wrong = (y + torch.randint(1, num_classes, (len(y),), generator=g)) % num_classes
    probe = ShortcutProbe(
        clean=test,
        patched=test.with_images(plant(test.images, y, every, slots, cfg.size, cfg.value)),
        shuffled=test.with_images(plant(test.images, wrong, every, slots, cfg.size, cfg.value)),
        patched_boxes=boxes_for(y, slots, cfg.size), shuffled_boxes=boxes_for(wrong, slots, cfg.size),
        train_planted=planted, slots=slots)
    return train, probe
