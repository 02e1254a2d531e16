"""Batches for one epoch, reproducible from (seed, epoch).

In-memory sets go through ImageSet.batch (one gather + vectorised augmentation, no workers);
file-backed sets (imagefolder) through a torch DataLoader whose per-sample seeds come from the
same generator, so the epoch is the same with any number of workers.
"""
from __future__ import annotations

from typing import Iterator, Optional, Union

import torch


def epoch_generator(seed: int, epoch: int = 0) -> torch.Generator:
    """A CPU generator whose stream depends on (seed, epoch) only (mixed with numpy's SeedSequence)."""
    import numpy as np

    state = np.random.SeedSequence([int(seed) % 2**63, int(epoch) % 2**63]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(ds, batch_size: int, shuffle: bool, seed: Union[int, torch.Generator],
                    drop_last: bool = False, *, epoch: int = 0,
                    device: Optional[Union[str, torch.device]] = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x float32 normalised (B, C, H, W), y int64 (B,)) over `ds` once.

    seed: an int (the epoch's stream is then epoch_generator(seed, epoch)) or a torch.Generator
    used as is (epoch ignored). The same generator draws the order and the augmentation.
    `device`: where batches go (pinned, non-blocking copies for file-backed sets).
    """
    g = seed if isinstance(seed, torch.Generator) else epoch_generator(seed, epoch)
    n = len(ds)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)  # (N,)
    if getattr(ds, "file_backed", False):
        yield from _dataloader_batches(ds, order, batch_size, drop_last, g, device)
        return
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        yield ds.batch(idx, generator=g, device=device)


def _dataloader_batches(ds, order, batch_size, drop_last, g, device):
    from torch.utils.data import DataLoader

    seeds = torch.randint(0, 2**62, (len(order),), generator=g)
    items = list(zip(order.tolist(), seeds.tolist()))                        # (index, transform seed)
    cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    workers = int(getattr(ds, "num_workers", 0))
    loader = DataLoader(ds, batch_size=batch_size, sampler=items, num_workers=workers,
                        pin_memory=cuda, drop_last=drop_last, persistent_workers=False)
    for x, y in loader:
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield x, y
