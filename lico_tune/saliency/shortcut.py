"""Shortcut-probe metrics of a trial (data.shortcut; lico_tune/data/shortcut.py builds the probe).

    shortcut/acc_clean, acc_patched, acc_shuffled   top-1 accuracy (%) of the explained model on the
                                                    probe's three versions of the test split
    shortcut/patch_reliance                         acc_patched - acc_shuffled (0: patch ignored)
    shortcut/patch_area                             the patch's area share (chance of patch_energy)
    saliency/<method>/patch_energy, patch_pointing  share of the map's energy / maxima on the patch,
                                                    on the patched images (own class's patch)
    saliency/<method>/patched_insertion, _deletion,  faithfulness on the patched images: if deletion
        _overall                                     AUC rewards the shortcut (Bartak et al.), a model
                                                     trained with patches gets a lower (better)
                                                     patched_deletion than a control arm
Compare arms with data.shortcut.fraction > 0 against a control (fraction 0, probe: true).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import nn

from ..keys import MASK_AREA, SHORTCUT_RENAMED
from ._util import frozen_eval, model_device
from .evaluate import Protocol, evaluate_saliency
from .localisation import boxes_to_masks

RENAMED = SHORTCUT_RENAMED                  # the tails of saliency metrics on patched images


@torch.no_grad()
def accuracy(model: nn.Module, images, batch_size: int = 256) -> float:
    """Top-1 accuracy (%) of model on an ImageSet, batch by batch."""
    device = model_device(model)
    correct = 0
    with frozen_eval(model):
        for s in range(0, len(images), batch_size):
            x, y = images.batch(torch.arange(s, min(s + batch_size, len(images))), augment=False, device=device)
            correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / max(1, len(images))


def shortcut_metrics(model: nn.Module, probe, indices: torch.Tensor, methods: Sequence[str],
                     protocol: Protocol) -> dict[str, float]:
    """The probe's metrics (see the module docstring); saliency on probe.patched[indices] under
    `protocol` (the spec's eval section), with the RISE curves only."""
    acc = {name: accuracy(model, getattr(probe, name), protocol.batch_size) for name in ("clean", "patched", "shuffled")}
    out = {f"shortcut/acc_{k}": v for k, v in acc.items()}
    out["shortcut/patch_reliance"] = acc["patched"] - acc["shuffled"]
    if not methods or len(indices) == 0:
        return out
    device = model_device(model)
    protocol = dataclasses.replace(protocol, orderings=("morf",), road=False, ses=False, sanity=False, mprt=())
    x, y = probe.patched.batch(indices, augment=False)
    masks = boxes_to_masks(probe.patched_boxes[indices], *x.shape[-2:])
    res = evaluate_saliency(model, x.to(device), y, methods, protocol, masks=masks, grid=False)
    out["shortcut/patch_area"] = res.metrics.pop(MASK_AREA)
    for k, v in res.metrics.items():
        head, _, tail = k.rpartition("/")
        if tail in RENAMED:
            out[f"{head}/{RENAMED[tail]}"] = v
    return out
