"""ROAD (Rong et al., ICML 2022): remove pixels by noisy linear imputation, most or least relevant
first, and read the model's confidence; batched.

Same definitions as pytorch-grad-cam's pytorch_grad_cam.metrics.road (the tests compare with it):
  - at percentile p, MoRF keeps the pixels whose map value is below the map's p-th percentile
    (np.percentile, linear) and imputes the rest; LeRF does the same on 1 - map (so it imputes
    the least relevant pixels);
  - an imputed pixel is the weighted mean of its 8 neighbours (weights 1/6 edge, 1/12 corner;
    neighbours outside the image drop out of the sum), known neighbours enter as constants: one
    sparse linear system per image, here stacked block-diagonally for a whole chunk of
    (image, order, percentile) jobs and solved once (scipy spsolve), plus noise * N(0, 1);
  - the score is the softmax probability of the target class on the imputed image.
ROADCombined = mean over percentiles of (LeRF - MoRF) / 2 (the clean image's score cancels).
Model forwards take batch_size imputed images at a time, never one image.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve
from torch import Tensor, nn

from ._util import as_targets, frozen_eval, model_device

# ((row offset, column offset), weight) of the 8 neighbours, as in ROAD's NoisyLinearImputer.
NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
              ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def impute(images: Tensor, keep: Tensor, noise: float = 0.01, generator: torch.Generator | None = None) -> Tensor:
    """Noisy linear imputation of images (n, C, H, W) where keep (n, H, W) is False, all n images
    in one block-diagonal sparse solve. Returns a new (n, C, H, W) float tensor on the CPU."""
    x = images.detach().cpu().double()
    n, C, H, W = x.shape
    hw = H * W
    known = keep.detach().cpu().bool().reshape(-1).numpy()                     # (n*H*W,)
    unknown = np.flatnonzero(~known)                                          # global pixel ids
    if len(unknown) == 0:
        return x.float()
    var_of = np.full(n * hw, -1, np.int64)
    var_of[unknown] = np.arange(len(unknown))
    img, pix = unknown // hw, unknown % hw
    r, c = pix // W, pix % W
    values = x.permute(0, 2, 3, 1).reshape(-1, C).numpy()                    # (n*H*W, C)
    diag = -np.ones(len(unknown))
    b = np.zeros((len(unknown), C))
    rows, cols, vals = [], [], []
    for (dr, dc), w in NEIGHBOURS:
        rr, cc = r + dr, c + dc
        valid = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
        diag[~valid] += w                                                     # -(sum of valid weights)
        eq = np.flatnonzero(valid)
        nb = img[eq] * hw + rr[eq] * W + cc[eq]
        has = known[nb]
        np.subtract.at(b, eq[has], w * values[nb[has]])
        rows.append(eq[~has])
        cols.append(var_of[nb[~has]])
        vals.append(np.full(int((~has).sum()), w))
    ids = np.arange(len(unknown))
    A = csc_matrix((np.concatenate(vals + [diag]), (np.concatenate(rows + [ids]), np.concatenate(cols + [ids]))),
                   shape=(len(unknown), len(unknown)))
    sol = spsolve(A, b).reshape(len(unknown), C)                              # (u, C)
    sol = torch.from_numpy(sol)
    if noise:
        sol = sol + noise * torch.randn(sol.shape, generator=generator, dtype=torch.float64)
    flat = x.permute(0, 2, 3, 1).contiguous().view(-1, C)                     # (n*H*W, C) a copy
    flat[torch.from_numpy(unknown)] = sol
    return flat.view(n, H, W, C).permute(0, 3, 1, 2).float().contiguous()


def keep_masks(maps: Tensor, percentiles: Sequence[float], order: str) -> Tensor:
    """(P, N, H, W) bool: the pixels kept at each percentile (see the module docstring)."""
    m = maps.detach().cpu().float().numpy()
    if order == "lerf":
        m = 1 - m
    elif order != "morf":
        raise ValueError(f"unknown ROAD order '{order}'; choose 'morf' or 'lerf'")
    thr = np.stack([np.percentile(m, p, axis=(1, 2)) for p in percentiles])   # (P, N), per map as pgc
    return torch.from_numpy(m[None] < thr[:, :, None, None].astype(m.dtype))


@torch.no_grad()
def road(model: nn.Module, images: Tensor, maps: Tensor, targets, percentiles: Sequence[float],
         batch_size: int = 64, noise: float = 0.01, seed: int = 0) -> dict[str, Tensor]:
    """ROAD scores. images (N, C, H, W) normalised, maps (N, H, W), targets (N,) ->
    {"morf": (N, P), "lerf": (N, P) target probabilities, "combined": (N,) mean (lerf - morf) / 2}."""
    targets = as_targets(targets, len(images))
    n, P = len(images), len(percentiles)
    keep = torch.stack([keep_masks(maps, percentiles, o) for o in ("morf", "lerf")])   # (2, P, N, H, W)
    jobs = torch.arange(2 * P * n)                                            # (order, percentile, image)
    scores = torch.empty(2 * P * n)
    g = torch.Generator().manual_seed(seed)
    device = model_device(model)
    with frozen_eval(model):
        for s in range(0, len(jobs), batch_size):
            job = jobs[s:s + batch_size]
            img = job % n
            x = impute(images[img].cpu(), keep.view(-1, *maps.shape[1:])[job], noise, g)
            probs = torch.softmax(model(x.to(device)).float(), 1)
            scores[job] = probs[torch.arange(len(job), device=device), targets[img].to(device)].cpu()
    s = scores.view(2, P, n)
    return {"morf": s[0].T.contiguous(), "lerf": s[1].T.contiguous(), "combined": ((s[1] - s[0]) / 2).mean(0)}
