"""CIFAR-10, CIFAR-100 and SVHN through torchvision, converted to in-memory uint8 tensors."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from . import names
from .errors import Probe, missing, not_downloadable
from .paths import RawSplits, download_lock, user_root

_FIX = ("Set data.download: true to let torchvision download it into {root} (needs internet), "
        "or set data.root to a folder that holds {what}.")


def dataset_class(name: str):
    import torchvision.datasets as tvd

    return {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "svhn": tvd.SVHN}[name]


def expected_files(name: str, cls) -> tuple[Path, str]:
    """(what must exist under root, its description)."""
    if name == "svhn":
        return Path("train_32x32.mat"), "train_32x32.mat and test_32x32.mat"
    return Path(cls.base_folder), f"{cls.base_folder}/"


def dataset_root(cfg, name: str, cls) -> Path:
    root = user_root(cfg.root, name)
    if name != "svhn" and root.name == cls.base_folder:                      # root given as the inner folder
        root = root.parent
    return root


def _open(name: str, cls, root: Path, download: bool):
    if name == "svhn":
        return cls(str(root), split="train", download=download), cls(str(root), split="test", download=download)
    return cls(str(root), train=True, download=download), cls(str(root), train=False, download=download)


def check_names(name: str, stored: list[str]) -> None:
    """The hard-coded names must equal the dataset's own meta file, in order."""
    ours = names.CIFAR10 if name == "cifar10" else names.CIFAR100_RAW
    if list(stored) != ours:
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(ours, stored)) if a != b][:5]
        raise ValueError(f"{name}: the dataset's meta file lists class names that differ from "
                         f"lico_tune.data.names (first differences, (label, ours, file): {diff}; "
                         f"{len(ours)} vs {len(stored)} names). Class-name order must equal label order.")


def _to_raw(name: str, train, test, source: str) -> RawSplits:
    def conv(ds):
        if name == "svhn":                                                    # data (N, C, H, W); label 0 = digit 0
            x, y = ds.data, ds.labels
        else:                                                                 # data (N, H, W, C)
            x, y = ds.data.transpose(0, 3, 1, 2), ds.targets
        return torch.from_numpy(np.ascontiguousarray(x)), torch.as_tensor(np.asarray(y, dtype=np.int64))

    if name != "svhn":
        check_names(name, train.classes)
    return RawSplits(*conv(train), *conv(test), source=source)


@lru_cache(maxsize=2)
def _read(name: str, root: str, download: bool) -> RawSplits:
    cls = dataset_class(name)
    inner, what = expected_files(name, cls)
    path = Path(root)
    fix = _FIX.format(root=root, what=what)
    if download:
        try:
            with download_lock(path):
                train, test = _open(name, cls, path, download=True)
        except Exception as exc:                                              # no internet, disk full...
            raise missing(name, [path / inner], f"Downloading it into {root} failed ({type(exc).__name__}: "
                          f"{exc}). Check the internet connection, or set data.root to a folder that holds "
                          f"{what}.") from exc
    else:
        if not (path / inner).exists():
            raise missing(name, [path / inner], fix)
        try:
            train, test = _open(name, cls, path, download=False)
        except RuntimeError as exc:                                           # torchvision: missing or md5 mismatch
            raise missing(name, [path / inner], fix, why=f"incomplete or corrupted ({exc})") from exc
    return _to_raw(name, train, test, str(path / inner))


def load(cfg, name: str) -> RawSplits:
    root = dataset_root(cfg, name, dataset_class(name))
    return _read(name, str(root), bool(cfg.download))


def require(cfg, name: str, probe: Probe) -> None:
    """Its files under data.root (or the default root), or (data.download) its URL answering now."""
    cls = dataset_class(name)
    root = dataset_root(cfg, name, cls)
    inner, what = expected_files(name, cls)
    if (root / inner).exists():
        return
    if not cfg.download:
        load(cfg, name)                                                       # raises DatasetMissing with the fix
    url = cls.split_list["train"][0] if name == "svhn" else cls.url
    why = probe(url)
    if why is not None:
        raise not_downloadable(name, url, why, [root / inner], what,
                               f"python -c \"import torchvision; "
                               f"torchvision.datasets.{cls.__name__}('{root}', download=True)\"")
