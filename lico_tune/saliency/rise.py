"""RISE (Petsiuk et al., BMVC 2018), batched.

N binary grids of s x s cells, each cell on with probability p, are upsampled bilinearly to
(s+1)*cell px (cell = ceil(H/s)) and cropped at a random shift in [0, cell) per axis, giving smooth
masks M_i (N, H, W) in [0, 1]. The masks depend only on (H, W, N, s, p, seed) and are generated once
and cached. Saliency for class c:  S_c = sum_i P(c | x * M_i) M_i / (N p)   (x normalised, so masked
pixels become the dataset mean). All B*N masked images go through the model in flat batches of
batch_size (never one image at a time); the maps are min-max normalised to [0, 1].

Known property: where P(c | x * M_i) barely varies over the masks (an untrained or randomised
model), S_c is proportional to the masks' coverage sum_i M_i, a fixed pattern of the seed, so RISE
maps of different models then correlate ~1 in the randomisation sanity check (they carry no model
information); more masks flatten the pattern.

Defaults: s = 8, p = 0.5; n_masks = 250 (used at 32 px by a LICO reproduction; the RISE paper used
4000 at 224 px).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._util import as_targets, frozen_eval, model_device, normalise_maps


@functools.lru_cache(maxsize=8)
def rise_masks(height: int, width: int, n_masks: int = 250, cells: int = 8, p: float = 0.5,
               seed: int = 0) -> Tensor:
    """(N, H, W) float32 CPU masks, deterministic in the arguments (cached; do not modify)."""
    g = torch.Generator().manual_seed(seed)
    cell_h, cell_w = math.ceil(height / cells), math.ceil(width / cells)
    up_h, up_w = (cells + 1) * cell_h, (cells + 1) * cell_w
    grid = (torch.rand(n_masks, 1, cells, cells, generator=g) < p).float()  # (N, 1, s, s)
    up = F.interpolate(grid, size=(up_h, up_w), mode="bilinear", align_corners=False)[:, 0]  # (N, uh, uw)
    dy = torch.randint(0, cell_h, (n_masks,), generator=g)
    dx = torch.randint(0, cell_w, (n_masks,), generator=g)
    rows = (dy[:, None] + torch.arange(height)[None])  # (N, H)
    cols = (dx[:, None] + torch.arange(width)[None])  # (N, W)
    masks = up[torch.arange(n_masks)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (N, H, W)
    return masks.contiguous()


@torch.no_grad()
def rise_maps(model: nn.Module, images: Tensor, targets, n_masks: int = 250, cells: int = 8,
              p: float = 0.5, seed: int = 0, batch_size: int = 256) -> Tensor:
    """RISE maps (B, H, W) in [0, 1] on the CPU for images (B, C, H, W) and target classes (B,)."""
    b, (h, w) = len(images), images.shape[-2:]
    targets = as_targets(targets, b)
    if b == 0:
        return torch.zeros(0, h, w)
    device = model_device(model)
    masks = rise_masks(h, w, n_masks, cells, p, seed).to(device)  # (N, H, W)
    probs = torch.empty(b * n_masks, device=device)  # P(target | x_b * M_i), index b * N + i
    tgt = targets.to(device)
    with frozen_eval(model):
        for start in range(0, b * n_masks, batch_size):
            idx = torch.arange(start, min(start + batch_size, b * n_masks), device=device)
            bi, mi = idx // n_masks, idx % n_masks
            x = images[bi.cpu()].to(device).float() * masks[mi][:, None]  # (n, C, H, W)
            probs[idx] = torch.softmax(model(x).float(), dim=1)[torch.arange(len(idx), device=device), tgt[bi]]
    sal = probs.view(b, n_masks) @ masks.flatten(1) / (n_masks * p)  # (B, H*W)
    return normalise_maps(sal.view(b, h, w).cpu())
