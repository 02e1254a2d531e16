"""Dataset name -> its registry row (how to load it, its normalisation and augmentation, what it needs
on disk, how a result names it); and build_data. A new dataset: one module here and its row."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from . import digits, fashion_mnist, imagefolder, names, placed, shortcut, torchvision_sets
from .imageset import ImageSet, crop_pad_for, resize_uint8
from .errors import Digest, Probe
from .paths import RawSplits, folder_identity
from .split import validation_indices
from .subsets import per_class_subset, stratified_subset

TEST_SUBSET_SEED = 0    # every trial evaluates on the same test images


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's registry row: how its splits are made, and what it answers for itself."""
    load: Optional[Callable[..., RawSplits]]       # cfg -> RawSplits (in-memory sets); None: `build` makes them
    mean: Optional[tuple[float, ...]]              # None: computed from the training split
    std: Optional[tuple[float, ...]]
    flip: bool                                     # horizontal flip is label-preserving
    # What it needs on disk: (cfg, probe) -> None, or DatasetMissing naming the fix; with data.download
    # the URL the trials would fetch must answer probe now (plan/preflight.py, before any trial starts).
    require: Callable[[Any, Probe], None]
    # How a result names the data read: (cfg, digest) -> the dict provenance.py records.
    identity: Callable[[Any, Digest], dict] = folder_identity
    # Splits that are not held in memory: cfg -> (train, test, class names, image size, source).
    build: Optional[Callable[[Any], tuple]] = None


def _torchvision(name: str, mean: tuple[float, ...], std: tuple[float, ...], flip: bool) -> DatasetInfo:
    return DatasetInfo(lambda cfg: torchvision_sets.load(cfg, name), mean, std, flip,
                       require=lambda cfg, probe: torchvision_sets.require(cfg, name, probe))


REGISTRY: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(fashion_mnist.load, (0.2860,), (0.3530,), True, fashion_mnist.require,
                                 fashion_mnist.identity),
    # digits: stats of the (fixed) full training split at the chosen size; no flip (a flipped 2 is no digit).
    "digits": DatasetInfo(digits.load, None, None, False, digits.require, digits.identity),
    # placed_fmnist: stats of its training canvases, computed when they are generated (they depend on
    # data.placed); native size = data.placed.canvas.
    "placed_fmnist": DatasetInfo(placed.load, None, None, True, placed.require, placed.identity),
    "cifar10": _torchvision("cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
    "cifar100": _torchvision("cifar100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
    "svhn": _torchvision("svhn", (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False),
    # imagefolder: images read from files per batch; ImageNet's statistics (imagefolder.py).
    "imagefolder": DatasetInfo(None, imagefolder.IMAGENET_MEAN, imagefolder.IMAGENET_STD, True, imagefolder.require,
                               build=imagefolder.build),
}
assert set(REGISTRY) == set(names.DATASETS)


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images scaled to [0, 1]."""
    C = images.shape[1]
    s = torch.zeros(C, dtype=torch.float64)
    s2 = torch.zeros(C, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].double().div_(255).transpose(0, 1).reshape(C, -1)   # (C, n*H*W)
        s += x.sum(1)
        s2 += (x * x).sum(1)
    n = images.numel() / C
    mean = s / n
    std = (s2 / n - mean ** 2).clamp_min(1e-12).sqrt()
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _scale_boxes(boxes: Optional[torch.Tensor], factor: float) -> Optional[torch.Tensor]:
    """Boxes after a resize by `factor`: outward rounding, so a box still covers its object."""
    if boxes is None or factor == 1:
        return boxes
    b = boxes.double() * factor
    return torch.cat([b[:, :2].floor(), b[:, 2:].ceil()], 1).long()


def _in_memory(cfg) -> tuple[ImageSet, ImageSet, list[str], int, str]:
    info = REGISTRY[cfg.name]
    raw = info.load(cfg)
    native = raw.x_train.shape[-1]
    size = cfg.image_size or native
    x_train, x_test = resize_uint8(raw.x_train, size), resize_uint8(raw.x_test, size)
    if info.mean is not None:
        mean, std = info.mean, info.std
    elif raw.mean is not None and size == native:
        mean, std = raw.mean, raw.std
    else:
        mean, std = channel_stats(x_train)
    pad = crop_pad_for(size)
    box_train, box_test = (_scale_boxes(b, size / native) for b in (raw.boxes_train, raw.boxes_test))
    train = ImageSet(x_train, raw.y_train, mean, std, augment=cfg.augment, pad=pad, flip=info.flip, boxes=box_train)
    test = ImageSet(x_test, raw.y_test, mean, std, augment=False, pad=pad, flip=info.flip, boxes=box_test)
    return train, test, list(names.FIXED[cfg.name]), size, raw.source


def build_data(cfg, seed: int = 0):
    """Load `cfg.name`, resize, and select the training labels and test images the spec asks for."""
    from . import DataBundle

    info = REGISTRY[cfg.name]
    if info.build is not None:
        train, test, class_names, size, source = info.build(cfg)
    else:
        train, test, class_names, size, source = _in_memory(cfg)
    for split, ds in (("train", train), ("test", test)):
        if len(ds) and (int(ds.labels.min()) < 0 or int(ds.labels.max()) >= len(class_names)):
            raise ValueError(f"{cfg.name} {split}: labels span {int(ds.labels.min())}..{int(ds.labels.max())} "
                             f"but there are {len(class_names)} class names")

    val = None
    if cfg.val_fraction > 0:       # before the trial's own subsets: fixed per experiment (data.val_seed)
        train_idx, val_idx = validation_indices(train.labels, cfg.val_fraction, cfg.val_seed)
        val = train.subset(val_idx).with_augment(False)
        train = train.subset(train_idx)
    g = torch.Generator().manual_seed(int(seed))
    if cfg.labels_per_class is not None:
        train = train.subset(per_class_subset(train.labels, cfg.labels_per_class, g, class_names))
    if cfg.train_subset is not None:
        train = train.subset(stratified_subset(train.labels, cfg.train_subset, g))
    if cfg.test_subset is not None:
        g_test = torch.Generator().manual_seed(TEST_SUBSET_SEED)
        test = test.subset(stratified_subset(test.labels, cfg.test_subset, g_test))
    probe = None
    if cfg.shortcut.active:
        if not isinstance(train, ImageSet):
            raise ValueError(f"data.shortcut works on in-memory datasets, not {cfg.name}; remove data.shortcut.")
        # 'whole' runs without augmentation (the spec says so): no crop to keep a patch inside.
        margin = 0 if cfg.shortcut.region == "whole" else crop_pad_for(size)
        train, probe = shortcut.build(train, test, cfg.shortcut, len(class_names), margin)
        test = probe.clean if cfg.shortcut.test == "absent" else probe.shuffled
    return DataBundle(name=cfg.name, train=train, test=test, val=val, class_names=class_names,
                      in_channels=train.in_channels, image_size=size, mean=train.mean, std=train.std,
                      source=source, shortcut=probe)

