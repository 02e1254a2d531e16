"""Fashion-MNIST from its idx files (gzipped or not), read with numpy; torchvision only downloads."""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .errors import missing
from .paths import RawSplits, default_root, download_lock

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")       # Debian package dataset-fashion-mnist
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def candidate_dirs(root: Optional[str]) -> list[Path]:
    """Folders searched, in order: root (the .gz folder, or a torchvision root holding
    FashionMNIST/raw), the Debian package's folder, the default download root."""
    dirs = []
    if root:
        r = Path(root).expanduser()
        dirs += [r, r / "FashionMNIST" / "raw"]
    dirs += [SYSTEM_DIR, default_root() / "FashionMNIST" / "raw"]
    return dirs


def find_file(folder: Path, stem: str) -> Optional[Path]:
    for p in (folder / f"{stem}.gz", folder / stem):
        if p.is_file():
            return p
    return None


def find_dir(root: Optional[str]) -> Optional[Path]:
    for d in candidate_dirs(root):
        if all(find_file(d, stem) for pair in FILES.values() for stem in pair):
            return d
    return None


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (the MNIST format): magic 0 0 dtype ndim, ndim big-endian int32 dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        buf = fh.read()
    if buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number {buf[:4]!r})")
    ndim = buf[3]
    dims = np.frombuffer(buf, ">i4", count=ndim, offset=4).tolist()
    data = np.frombuffer(buf, _IDX_DTYPES[buf[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} values (truncated file?)")
    return data.reshape(dims)


@lru_cache(maxsize=2)
def _read_dir(folder: str) -> RawSplits:
    out = {}
    for split, (img, lab) in FILES.items():
        x = read_idx(find_file(Path(folder), img))                                # (N, 28, 28) uint8
        y = read_idx(find_file(Path(folder), lab))                                # (N,) uint8
        out[split] = (torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    return RawSplits(*out["train"], *out["test"], source=folder)


def load(cfg) -> RawSplits:
    folder = find_dir(cfg.root)
    if folder is None and cfg.download:
        root = Path(cfg.root).expanduser() if cfg.root else default_root()
        try:
            from torchvision.datasets import FashionMNIST

            with download_lock(root):
                FashionMNIST(str(root), train=True, download=True)
        except Exception as exc:                                              # no internet, disk full...
            raise missing("fashion_mnist", candidate_dirs(cfg.root),
                          f"Downloading it into {root} failed ({type(exc).__name__}: {exc}). Install the "
                          f"Debian package (`sudo apt-get install dataset-fashion-mnist`) or copy the four "
                          f"idx .gz files into a folder and set data.root to it.") from exc
        folder = find_dir(cfg.root) or find_dir(str(root))
    if folder is None:
        raise missing("fashion_mnist", candidate_dirs(cfg.root),
                      "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set "
                      "data.download: true to let torchvision fetch it (needs internet), or set data.root to a "
                      "folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                      "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.",
                      why="not found (its four idx files)")
    return _read_dir(str(folder))
