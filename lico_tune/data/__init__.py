"""Datasets for lico-tune: a registry of names -> train/test splits with class names in label order.

    bundle = build_data(DataConfig(name="fashion_mnist"), seed=0)
    for x, y in iterate_batches(bundle.train, 128, shuffle=True, seed=0, epoch=0): ...

Importing this package is cheap (no torch, torchvision or sklearn until a dataset is built): the
spec reads data/names.py, which runs this file. For that reason nothing in data/ imports the spec,
not even for type hints (it would close a circle spec -> data -> spec); `cfg` is a spec DataConfig.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from .errors import DatasetMissing
from .names import DATASETS

if TYPE_CHECKING:
    from .imagefolder import FolderSet
    from .imageset import ImageSet
    from .shortcut import ShortcutProbe


@dataclass
class DataBundle:
    name: str
    train: "ImageSet | FolderSet"        # training split (augmented when cfg.augment)
    test: "ImageSet | FolderSet"         # test split (never augmented)
    class_names: list[str]               # in label order: class_names[y] is the name of label y
    in_channels: int                     # 1 or 3
    image_size: int                      # H == W after any resize
    mean: tuple[float, ...]              # normalisation applied: (x/255 - mean) / std
    std: tuple[float, ...]
    source: str = field(default="")      # where the data was read from
    shortcut: Optional["ShortcutProbe"] = None   # the shortcut probe's test sets (data.shortcut)
    val: "Optional[ImageSet | FolderSet]" = None  # validation split carved from train (data.val_fraction)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict:
        """Plain facts for a trial's results."""
        return {"name": self.name, "n_train": len(self.train), "n_test": len(self.test),
                "n_val": 0 if self.val is None else len(self.val),
                "num_classes": self.num_classes, "in_channels": self.in_channels,
                "image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "source": self.source, "boxes": getattr(self.test, "boxes", None) is not None,
                "shortcut_planted": None if self.shortcut is None else int(self.shortcut.train_planted.sum())}


def build_data(cfg, seed: int = 0) -> DataBundle:
    """Load the dataset `cfg` names. `seed` picks labels_per_class / train_subset examples; the
    test subset and the digits split never depend on it. Raises DatasetMissing when not on disk."""
    from .registry import build_data as _build

    return _build(cfg, seed)


def dataset_names() -> list[str]:
    return list(DATASETS)


def class_names_for(name: str, root=None, class_names_file: Optional[str] = None) -> list[str]:
    """Class names in label order, without loading images (imagefolder needs root)."""
    if name == "imagefolder":
        from .imagefolder import class_names

        if root is None:
            raise ValueError("imagefolder class names come from its class folders: pass root (data.root)")
        return class_names(root, class_names_file)
    from .names import FIXED

    if name not in FIXED:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(DATASETS)}")
    return list(FIXED[name])


def __getattr__(name: str):                  # lazy: these import torch
    if name == "ImageSet":
        from .imageset import ImageSet
        return ImageSet
    if name == "FolderSet":
        from .imagefolder import FolderSet
        return FolderSet
    if name in ("iterate_batches", "epoch_generator", "num_batches"):
        from . import loader
        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DatasetMissing", "DataBundle", "build_data", "dataset_names", "class_names_for",
           "ImageSet", "FolderSet", "iterate_batches", "epoch_generator", "num_batches"]
