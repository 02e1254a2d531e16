"""Smooth and efficient model-parameter randomisation tests (Hedstroem et al., "Sanity checks
revisited", TMLR 2024; Quantus' SmoothMPRT and EfficientMPRT), beside the cascading test of
sanity.py.

sMPRT: the cascading randomisation of sanity.py (top layer first, cumulative, Spearman per image
between trained and randomised maps), but every map is the mean of the maps of n_samples noisy
copies x + N(0, (noise * (max x - min x))^2) of the image (a SmoothGrad-style denoising that keeps
gradient shattering from faking a low correlation). Lower correlation after randomisation = better.
eMPRT: randomise every parameterised layer at once and compare the complexity of the explanation,
the discrete entropy of its histogram (n_bins bins over [0, 1]; maps are min-max normalised), per
image: eMPRT = H(map of the randomised model) / H(map of the trained model). A method that
explains the model gives noisier maps for a random model: eMPRT > 1 is the expected direction.

Noisy copies go through the method in batches of batch_size (images x copies flattened).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from ._util import as_targets, normalise_maps
from .methods import make_saliency_fn
from .sanity import resolve_layer_name, randomisable_layers, reinitialise, spearman


def _maps(model: nn.Module, method: str, images: Tensor, targets: Tensor, batch_size: int,
          target_layer: nn.Module | str | None = None, **options) -> Tensor:
    """Maps of model (N, H, W); target_layer: a name (valid in deep copies too) or None."""
    fn = make_saliency_fn(model, method, target_layer=target_layer, batch_size=batch_size, **options)
    return torch.cat([fn(images[i:i + batch_size], targets[i:i + batch_size])
                      for i in range(0, len(images), batch_size)])


def smooth_maps(model: nn.Module, method: str, images: Tensor, targets: Tensor, n_samples: int,
                noise: float, seed: int = 0, batch_size: int = 64, **options) -> Tensor:
    """(N, H, W): the mean map over n_samples noisy copies of each image (the same noise for
    every model, from seed), min-max normalised."""
    g = torch.Generator().manual_seed(seed)
    span = (images.flatten(1).max(1).values - images.flatten(1).min(1).values).view(-1, 1, 1, 1, 1)
    eps = torch.randn(len(images), n_samples, *images.shape[1:], generator=g)      # (N, S, C, H, W)
    noisy = (images.cpu()[:, None] + noise * span.cpu() * eps).flatten(0, 1)        # (N*S, C, H, W)
    maps = _maps(model, method, noisy.to(images.device), targets.repeat_interleave(n_samples), batch_size, **options)
    return normalise_maps(maps.view(len(images), n_samples, *maps.shape[1:]).mean(1))


def smooth_mprt(model: nn.Module, images: Tensor, targets, method: str = "gradcam", n_samples: int = 8,
                noise: float = 0.1, max_layers: int | None = None, seed: int = 0, batch_size: int = 64,
                **options) -> dict:
    """sMPRT on a deep copy of model. Returns {"layers": ["(none)", ...], "spearman": (L+1, N),
    "mean": (L+1,)}, row l after randomising the top l layers (as cascading_randomisation)."""
    targets = as_targets(targets, len(images))
    options["target_layer"] = resolve_layer_name(model, options.get("target_layer"))
    names = randomisable_layers(model)[:max_layers]
    work = copy.deepcopy(model)
    ref = smooth_maps(model, method, images, targets, n_samples, noise, seed, batch_size, **options)
    rows = [spearman(ref, smooth_maps(work, method, images, targets, n_samples, noise, seed, batch_size, **options))]
    for i, name in enumerate(names):
        reinitialise(work.get_submodule(name), seed + i)
        rows.append(spearman(ref, smooth_maps(work, method, images, targets, n_samples, noise, seed, batch_size,
                                              **options)))
    corr = torch.stack(rows)
    return {"layers": ["(none)"] + names, "spearman": corr, "mean": corr.mean(1)}


def histogram_entropy(maps: Tensor, n_bins: int = 100) -> Tensor:
    """(N,) discrete entropy (nats) of each map's histogram over [0, 1] with n_bins equal bins."""
    v = maps.detach().flatten(1).float().clamp(0, 1)                                # (N, H*W)
    idx = (v * n_bins).long().clamp_(max=n_bins - 1)
    counts = torch.zeros(len(v), n_bins).scatter_add_(1, idx.cpu(), torch.ones_like(v).cpu())
    p = counts / counts.sum(1, keepdim=True)
    return -(p * torch.log(p.clamp_min(1e-30))).sum(1)


def efficient_mprt(model: nn.Module, images: Tensor, targets, method: str = "gradcam",
                   layers: Sequence[str] | None = None, n_bins: int = 100, seed: int = 0,
                   batch_size: int = 64, **options) -> dict:
    """eMPRT on a deep copy of model: {"entropy_trained": (N,), "entropy_random": (N,),
    "ratio": (N,)}; ratio = entropy_random / entropy_trained (inf-safe: a zero-entropy trained
    map gives ratio entropy_random / 1e-12 capped at 1e6)."""
    targets = as_targets(targets, len(images))
    options["target_layer"] = resolve_layer_name(model, options.get("target_layer"))
    work = copy.deepcopy(model)
    for i, name in enumerate(randomisable_layers(model) if layers is None else layers):
        reinitialise(work.get_submodule(name), seed + i)
    h0 = histogram_entropy(_maps(model, method, images, targets, batch_size, **options), n_bins)
    h1 = histogram_entropy(_maps(work, method, images, targets, batch_size, **options), n_bins)
    return {"entropy_trained": h0, "entropy_random": h1, "ratio": (h1 / h0.clamp_min(1e-12)).clamp(max=1e6)}
