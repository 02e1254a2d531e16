"""Salience equivariance score (SES): does the explanation move with the image?

For each image a transform t is drawn (seeded): a random resized crop (area share in `scale`,
aspect ratio in `ratio`, log-uniform, torchvision's sampling with 10 tries then a centre crop)
resized back to (H, W) bilinearly, then a horizontal flip with probability flip_p. The score is
the cosine similarity between t(S(x)) and S(t(x)) for the same target class, per image; higher is
better, 1 for a map that commutes with t. An all-zero map has similarity 0.

t is applied to the image and to its map with the same crop box, the same resize
(torch.nn.functional.interpolate, bilinear, align_corners=False) and the same flip.
Defaults scale=(0.5, 1.0) (torchvision's 0.08 lower bound leaves 9 px of a 32 px image).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._util import SaliencyFn, as_targets


def sample_crops(n: int, height: int, width: int, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3),
                 flip_p: float = 0.5, seed: int = 0) -> Tensor:
    """(n, 5) long tensor of (top, left, h, w, flip) per image, as torchvision RandomResizedCrop."""
    g = torch.Generator().manual_seed(seed)
    area, log_r = height * width, (math.log(ratio[0]), math.log(ratio[1]))
    out = torch.empty(n, 5, dtype=torch.long)
    for i in range(n):
        for _ in range(10):
            target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=g).item())
            r = math.exp(log_r[0] + (log_r[1] - log_r[0]) * torch.rand(1, generator=g).item())
            w, h = int(round(math.sqrt(target * r))), int(round(math.sqrt(target / r)))
            if 0 < w <= width and 0 < h <= height:
                top = torch.randint(0, height - h + 1, (1,), generator=g).item()
                left = torch.randint(0, width - w + 1, (1,), generator=g).item()
                break
        else:  # centre crop at the nearest allowed ratio (torchvision's fallback)
            r = width / height
            if r < min(ratio):
                w, h = width, int(round(width / min(ratio)))
            elif r > max(ratio):
                w, h = int(round(height * max(ratio))), height
            else:
                w, h = width, height
            top, left = (height - h) // 2, (width - w) // 2
        flip = int(torch.rand(1, generator=g).item() < flip_p)
        out[i] = torch.tensor([top, left, h, w, flip])
    return out


def apply_crops(x: Tensor, crops: Tensor) -> Tensor:
    """Apply per-item (top, left, h, w, flip) to x (N, C, H, W) or maps (N, H, W); same size out."""
    squeeze = x.ndim == 3
    x = x[:, None] if squeeze else x
    size = x.shape[-2:]
    out = []
    for xi, (top, left, h, w, flip) in zip(x, crops.tolist()):
        y = F.interpolate(xi[None, :, top:top + h, left:left + w].float(), size=size, mode="bilinear",
                          align_corners=False)
        out.append(y.flip(-1) if flip else y)
    y = torch.cat(out)
    return y[:, 0] if squeeze else y


def cosine(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """Per-row cosine similarity of (N, ...) tensors; 0 where either row is all zeros."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    sim = (a * b).sum(1) / (na * nb).clamp_min(eps)
    return torch.where((na > eps) & (nb > eps), sim, torch.zeros_like(sim))


def salience_equivariance(saliency_fn: SaliencyFn, images: Tensor, targets, seed: int = 0,
                          scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), flip_p: float = 0.5,
                          batch_size: int = 64, maps: Tensor | None = None) -> Tensor:
    """SES per image (N,): cosine(t(S(x)), S(t(x))). maps: S(x) if already computed."""
    n, (h, w) = len(images), images.shape[-2:]
    targets = as_targets(targets, n)
    crops = sample_crops(n, h, w, scale, ratio, flip_p, seed)
    out = []
    for i in range(0, n, batch_size):
        x, t, c = images[i:i + batch_size], targets[i:i + batch_size], crops[i:i + batch_size]
        s_x = saliency_fn(x, t) if maps is None else maps[i:i + batch_size]
        s_tx = saliency_fn(apply_crops(x.cpu(), c).to(x.device), t)
        out.append(cosine(apply_crops(s_x.cpu(), c), s_tx.cpu()))
    return torch.cat(out) if out else torch.zeros(0)
