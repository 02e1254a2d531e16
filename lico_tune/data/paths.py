"""Where datasets live by default, and the lock that serialises downloads into one root."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch

from ..layout import CACHE_DIR

DATA_HOME = CACHE_DIR / "data"


def default_root(name: Optional[str] = None) -> Path:
    """~/.cache/lico-tune/data[/name]."""
    home = DATA_HOME.expanduser()
    return home / name if name else home


def user_root(root: Optional[str], name: Optional[str] = None) -> Path:
    return Path(root).expanduser() if root else default_root(name)


def folder_identity(cfg, digest) -> dict:
    """A dataset read from a folder (data.root, or its default): the folder and a digest of its files."""
    folder = user_root(getattr(cfg, "root", None), cfg.name)
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".lico-tune")] \
        if folder.is_dir() else []
    return {"name": cfg.name, "path": str(folder), **(digest(files, folder) if files else {"files": 0})}


@contextmanager
def download_lock(root: Path) -> Iterator[None]:
    """Hold a FileLock in `root`, so that trials sharing a root download a dataset once."""
    import shutil

    from filelock import FileLock

    created = root                                    # the topmost folder this call creates, if any
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    fresh = not created.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(root / ".lico-tune-download.lock")):
            yield
    except BaseException:
        if fresh:                                     # a failed download leaves no empty cache folder
            shutil.rmtree(created, ignore_errors=True)
        raise


@dataclass
class RawSplits:
    """A dataset as loaded from disk: uint8 (N, C, H, W) images and int64 labels per split."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str                                                               # where it was read from
    boxes_train: Optional[torch.Tensor] = None    # (N, 4) int64 item boxes (x0, y0, x1, y1), x1/y1 exclusive
    boxes_test: Optional[torch.Tensor] = None
    mean: Optional[tuple[float, ...]] = None      # training-split stats when the loader knows them
    std: Optional[tuple[float, ...]] = None
