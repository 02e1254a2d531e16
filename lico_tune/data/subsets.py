"""Seeded subsets of a split: N labels per class, and stratified random subsets."""
from __future__ import annotations

from typing import Optional, Sequence

import torch


def per_class_subset(labels: torch.Tensor, n_per_class: int, generator: torch.Generator,
                     class_names: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Indices of exactly `n_per_class` examples of every class, drawn with `generator`, sorted.
    Raises ValueError if a class has fewer."""
    labels = labels.cpu()
    num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
    picked = []
    for c in range(num_classes):
        idx = (labels == c).nonzero().flatten()
        if len(idx) < n_per_class:
            name = f" '{class_names[c]}'" if class_names is not None else ""
            raise ValueError(f"data.labels_per_class = {n_per_class}, but class {c}{name} has only "
                             f"{len(idx)} training images; lower labels_per_class to at most "
                             f"{int(torch.bincount(labels, minlength=num_classes).min())}.")
        picked.append(idx[torch.randperm(len(idx), generator=generator)[:n_per_class]])
    return torch.cat(picked).sort().values


def stratified_subset(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of min(n, len) examples, drawn with `generator`, with class proportions kept as
    close as possible to the full split's (largest-remainder style, ties broken at random). Sorted."""
    labels = labels.cpu()
    N = len(labels)
    if n >= N:
        return torch.arange(N)
    perm = torch.randperm(N, generator=generator)
    lab = labels[perm]                                                        # labels in random order
    counts = torch.bincount(lab)
    starts = counts.cumsum(0) - counts
    grouped = torch.argsort(lab, stable=True)                                 # by class, random within
    rank = torch.empty(N, dtype=torch.long)
    rank[grouped] = torch.arange(N) - starts[lab[grouped]]                    # rank within its class
    key = (rank.double() + 0.5) / counts[lab].double()                        # quantile within class
    take = torch.argsort(key, stable=True)[:n]
    return perm[take].sort().values
