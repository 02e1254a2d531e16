"""scikit-learn's digits (1,797 real 8x8 handwritten digits), with a split that never changes."""
from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from .errors import Digest, Probe
from .paths import RawSplits

TEST_FRACTION = 0.2
SPLIT_SEED = 0          # fixed: the train/test split is the same for every trial seed


@lru_cache(maxsize=1)
def _load() -> RawSplits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()                                                         # images (1797, 8, 8) in 0..16
    x = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]   # (N, 1, 8, 8)
    y = d.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED)
    tr, te = np.sort(tr), np.sort(te)
    t = torch.from_numpy
    return RawSplits(t(x[tr]), t(y[tr]), t(x[te]), t(y[te]), source="sklearn.datasets.load_digits")


def load(cfg) -> RawSplits:
    return _load()


def require(cfg, probe: Probe) -> None:
    """Nothing to find: scikit-learn ships the digits."""


def identity(cfg, digest: Digest) -> dict:
    """scikit-learn's version and a digest of the file it ships."""
    import sklearn
    f = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    return {"name": "digits", "source": "sklearn.datasets.load_digits", "sklearn": metadata.version("scikit-learn"),
            **digest([f], None)}
