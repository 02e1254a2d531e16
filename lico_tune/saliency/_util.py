"""Helpers shared by the saliency modules: model state, map normalisation, targets."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

# A saliency method bound to a model: (images (B, C, H, W), targets (B,)) -> maps (B, H, W) in [0, 1].
SaliencyFn = Callable[[Tensor, Tensor], Tensor]


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, parameters not requiring grad, and their .grad stashed; all restored on exit.

    Saliency code may run between training steps: it must leave the model's mode, its
    requires_grad flags and any accumulated gradients exactly as it found them (grad-cam calls
    model.zero_grad()). With frozen parameters, backward computes input-path gradients only.
    """
    was_training = model.training
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f, g in zip(params, flags, grads):
            p.requires_grad_(f)
            p.grad = g
        model.train(was_training)


def normalise_maps(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Min-max normalise each map of (B, H, W) to [0, 1]; a constant map becomes all zeros."""
    flat = maps.detach().float().flatten(1)  # (B, H*W)
    lo = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - lo
    out = torch.where(span > eps, (flat - lo) / span.clamp_min(eps), torch.zeros_like(flat))
    return out.clamp_(0.0, 1.0).view_as(maps)


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Predicted classes (B,) on the clean images, in eval mode, batch by batch."""
    device = model_device(model)
    with frozen_eval(model):
        out = [model(images[i:i + batch_size].to(device)).argmax(1).cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def as_targets(targets, n: int) -> Tensor:
    """An int, sequence or tensor of class indices -> LongTensor (n,) on the CPU."""
    t = torch.as_tensor(targets, dtype=torch.long).cpu()
    if t.ndim == 0:
        t = t.expand(n).clone()
    if t.shape != (n,):
        raise ValueError(f"targets: expected {n} class indices, got shape {tuple(t.shape)}")
    return t
