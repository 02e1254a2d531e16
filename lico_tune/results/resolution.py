"""Test-set resolution of paired accuracy differences.

A seed-paired interval treats each trial's accuracy as exact, but a 10,000-image test set is itself
a sample: two models of equal true accuracy differ on it by a few tenths of a point. Every trial
keeps its per-test-image correctness (keys.pack_correct), so a paired accuracy difference also
gets a two-level bootstrap interval: each resample draws the seeds (pairs) with replacement and,
independently, the test images with replacement (one draw of images shared by every trial: they all
saw the same test set), and recomputes the mean difference; the interval is the resample's
percentile interval. report.py's verdicts use it where it exists.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Optional

import numpy as np
import pandas as pd

from ..keys import TEST_CORRECT, unpack_correct
from ..layout import METRICS_FILE
from ..storage import Storage, join

IMAGE_RESAMPLES = 2_000
RESAMPLE_SEED = 0
_CHUNK = 100  # resamples per matrix product: (_CHUNK, n_images) counts in memory at a time


def two_level_interval(arm: np.ndarray, base: np.ndarray, level: float = 0.95,
                       n_resamples: int = IMAGE_RESAMPLES, seed: int = RESAMPLE_SEED) -> tuple[float, float]:
    """Percentile interval (percentage points) of mean_s [acc(arm_s) - acc(base_s)] under resampling
    of seeds and test images. arm, base: (S, N) bool, row s = seed s's per-image correctness."""
    arm, base = np.asarray(arm, dtype=float), np.asarray(base, dtype=float)
    if arm.shape != base.shape or arm.ndim != 2 or arm.shape[0] < 1:
        raise ValueError(f"need two (seeds, images) arrays of one shape, got {arm.shape} and {base.shape}")
    diff = arm - base  # (S, N) in {-1, 0, 1}
    S, N = diff.shape
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_resamples, _CHUNK):
        b = min(_CHUNK, n_resamples - start)
        counts = rng.multinomial(N, np.full(N, 1.0 / N), size=b)  # (b, N): how often each image is drawn
        per_seed = counts @ diff.T / N                             # (b, S): each seed's accuracy difference
        seeds = rng.integers(0, S, size=(b, S))                    # (b, S): the resampled pairs
        out.append(np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1))
    stats = 100.0 * np.concatenate(out)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1.0 - tail))


@lru_cache(maxsize=4096)
def trial_correctness(path: str) -> dict:
    """Accuracy key -> correct (N,) bool of one trial directory, {} when it kept none (older trials)."""
    text = Storage(path).read_text(join(path, METRICS_FILE))
    try:
        record = json.loads(text or "{}").get(TEST_CORRECT) or {}
        return {k: unpack_correct(v) for k, v in record.items()}
    except (ValueError, TypeError, AttributeError, KeyError):
        return {}


def _bits(usable: pd.DataFrame, row: pd.Series, arm: str) -> Optional[np.ndarray]:
    """(S, N) correctness of `arm`'s trials at the row's seeds, or None where any is missing or a
    seed has several trials (pooled configurations)."""
    g = usable[(usable["experiment"] == row["experiment"]) & (usable["dataset"] == row["dataset"])
               & (usable["arm"] == arm)]
    rows = []
    for seed in row["seeds"]:
        match = g[g["seed"].map(lambda s: s == seed)]
        if len(match) != 1:
            return None
        bits = trial_correctness(str(match.iloc[0]["path"])).get(row["metric"])
        if bits is None:
            return None
        rows.append(bits)
    return np.stack(rows) if rows and len({len(r) for r in rows}) == 1 else None


def add_image_intervals(paired: pd.DataFrame, usable: pd.DataFrame, level: float) -> pd.DataFrame:
    """Fill ci_low_images / ci_high_images of the paired rows whose trials kept their correctness."""
    paired = paired.copy()
    lows, highs = [], []
    for _, r in paired.iterrows():
        lo = hi = math.nan
        if r["metric"].startswith("test/acc") and len(r["seeds"]) >= 2 and "path" in usable.columns:
            a, b = _bits(usable, r, r["arm"]), _bits(usable, r, r["baseline"])
            if a is not None and b is not None and a.shape == b.shape:
                lo, hi = two_level_interval(a, b, level)
        lows.append(lo)
        highs.append(hi)
    paired["ci_low_images"], paired["ci_high_images"] = lows, highs
    return paired
