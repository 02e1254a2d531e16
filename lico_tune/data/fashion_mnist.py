"""Fashion-MNIST from its idx files (gzipped or not), read with numpy; torchvision only downloads."""
from __future__ import annotations

import gzip
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .errors import Digest, Probe, missing, not_downloadable
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


def require(cfg, probe: Probe) -> None:
    """Its four idx files here, or (data.download) torchvision's first mirror answering now."""
    if find_dir(cfg.root) is not None:
        return
    if not cfg.download:
        load(cfg)                                                             # raises DatasetMissing with the fix
    from torchvision.datasets import FashionMNIST
    url = FashionMNIST.mirrors[0] + FashionMNIST.resources[0][0]
    why = probe(url)
    if why is not None:
        raise not_downloadable("fashion_mnist", url, why, candidate_dirs(cfg.root),
                               "the four idx .gz files of Fashion-MNIST",
                               "sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or `python -c \"import "
                               "torchvision; torchvision.datasets.FashionMNIST('DIR', download=True)\"")


def identity(cfg, digest: Digest) -> dict:
    """The folder read, the Debian package's version when it is the system one, a digest of the four files."""
    d = find_dir(cfg.root)
    if d is None:
        return {"name": "fashion_mnist", "error": "data files not found"}
    files = [find_file(d, stem) for pair in FILES.values() for stem in pair]
    pkg = _dpkg_version("dataset-fashion-mnist") if d.resolve() == SYSTEM_DIR.resolve() else None
    return {"name": "fashion_mnist", "path": str(d), "debian_package": pkg and f"dataset-fashion-mnist {pkg}",
            **digest(files, d)}


@lru_cache(maxsize=4)
def _dpkg_version(package: str) -> Optional[str]:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
