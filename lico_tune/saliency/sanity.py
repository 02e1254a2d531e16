"""Model-parameter randomisation test (Adebayo et al., NeurIPS 2018), cascading from the top.

On a copy of the model, the parameterised layers (modules with parameters of their own: conv,
batch norm, linear, ...) are re-initialised one by one from the output end downwards, cumulatively
(registration order reversed: for our backbones, the classifier first, then the last block's
layers, ...). After each step the maps of the same images and targets are recomputed and
compared with the trained model's by Spearman rank correlation (scipy, average ranks for ties),
per image. A map that is constant (no ranking) correlates 0. Row 0 compares the trained model
with itself (1.0). A method that explains the model should see the correlation fall.

Re-initialisation: the module's own reset_parameters() (PyTorch's default init; batch norm goes
to weight 1, bias 0, running mean 0, var 1) under a fixed seed per layer, else N(0, 0.02).
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

from ._util import SaliencyFn, as_targets
from .methods import make_saliency_fn


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the modules with parameters of their own, from the output end downwards."""
    return [name for name, m in model.named_modules()
            if name and any(True for _ in m.parameters(recurse=False))][::-1]


@torch.no_grad()
def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-initialise module's own parameters (and buffers via reset_parameters) under seed."""
    devices = sorted({p.device.index for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            for p in module.parameters(recurse=False):
                nn.init.normal_(p, std=0.02)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Per-row Spearman rank correlation of (N, ...) maps a and b -> (N,); NaN (constant) -> 0."""
    x, y = a.detach().flatten(1).cpu().double().numpy(), b.detach().flatten(1).cpu().double().numpy()
    out = np.zeros(len(x))
    for i in range(len(x)):
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            out[i] = spearmanr(x[i], y[i]).statistic
    return torch.from_numpy(out).float()


def resolve_layer_name(model: nn.Module, layer: nn.Module | str | None) -> str | None:
    if layer is None or isinstance(layer, str):
        return layer
    for name, m in model.named_modules():
        if m is layer:
            return name
    raise ValueError("target_layer is not a submodule of model")


def cascading_randomisation(model: nn.Module, images: Tensor, targets,
                            method: str | Callable[[nn.Module], SaliencyFn] = "gradcam",
                            target_layer: nn.Module | str | None = None, layers: Sequence[str] | None = None,
                            max_layers: int | None = None, seed: int = 0, batch_size: int = 64,
                            **method_options) -> dict:
    """Cascading randomisation on a deep copy of model (the model itself is left untouched).

    method: a method name (see make_saliency_fn; method_options go to it) or a factory
    model -> SaliencyFn. layers: names to randomise, top first (default randomisable_layers(model),
    the first max_layers of them). Returns {"layers": ["(none)", name1, ...],
    "spearman": (L+1, N) tensor, "mean": (L+1,) tensor}: row l after randomising layers[:l].
    """
    targets = as_targets(targets, len(images))
    names = list(randomisable_layers(model) if layers is None else layers)[:max_layers]
    layer_name = resolve_layer_name(model, target_layer)
    work = copy.deepcopy(model)

    def maps_of(m: nn.Module) -> Tensor:
        if callable(method):
            fn = method(m)
        else:
            fn = make_saliency_fn(m, method, target_layer=layer_name, batch_size=batch_size, **method_options)
        return torch.cat([fn(images[i:i + batch_size], targets[i:i + batch_size])
                          for i in range(0, len(images), batch_size)])

    reference = maps_of(model)
    rows = [spearman(reference, maps_of(work))]
    for i, name in enumerate(names):
        reinitialise(work.get_submodule(name), seed + i)
        rows.append(spearman(reference, maps_of(work)))
    corr = torch.stack(rows)  # (L+1, N)
    return {"layers": ["(none)"] + names, "spearman": corr, "mean": corr.mean(1)}
