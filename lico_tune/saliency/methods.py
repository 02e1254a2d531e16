"""One interface over all saliency methods: make_saliency_fn(model, method) -> SaliencyFn.

A SaliencyFn maps (images (B, C, H, W) normalised, targets (B,)) to maps (B, H, W) in [0, 1] on
the CPU. Methods: gradcam, gradcampp, scorecam, layercam (grad-cam package, on the CAM target
layer: model.cam_layer unless given) and rise (batched, written here).
"""
from __future__ import annotations

from torch import Tensor, nn

from ._util import SaliencyFn
from ..names import SALIENCY_METHODS
from .cam import saliency_maps
from .rise import rise_maps

METHODS = SALIENCY_METHODS


def make_saliency_fn(model: nn.Module, method: str, target_layer: nn.Module | str | None = None,
                     batch_size: int = 64, rise_n_masks: int = 250, rise_cells: int = 8,
                     rise_p: float = 0.5, rise_seed: int = 0) -> SaliencyFn:
    """Bind a method to a model. target_layer: a module, a module name in model, or None
    (model.cam_layer). batch_size bounds the images per forward (CAM) or masked images (RISE)."""
    if method not in METHODS:
        raise ValueError(f"unknown saliency method '{method}'; choose one of {METHODS}")
    if method == "rise":
        def rise(images: Tensor, targets) -> Tensor:
            return rise_maps(model, images, targets, n_masks=rise_n_masks, cells=rise_cells, p=rise_p,
                             seed=rise_seed, batch_size=batch_size)
        return rise
    layer = model.get_submodule(target_layer) if isinstance(target_layer, str) else target_layer

    def cam(images: Tensor, targets) -> Tensor:
        return saliency_maps(model, layer, images, targets, method, batch_size=batch_size)
    return cam
