"""Placed Fashion-MNIST: each Fashion-MNIST item pasted at a random position on a larger cluttered
canvas, with its box: the offline localisation ground truth.

One canvas per source item (the train canvases come from Fashion-MNIST's train split, the test
canvases from its test split, so the split is kept). Per canvas, drawn from one seeded numpy
Generator, chunk by chunk, all vectorised:
  - `clutter` crops (clutter_size x clutter_size) of items of *other* classes (so no evidence of
    the label lies outside the box), each scaled by a contrast factor in clutter_contrast and
    pasted at a random position;
  - the item, scaled by a contrast factor in item_contrast, pasted at a random position;
    layers are combined with max (items are bright on black);
  - Gaussian noise of std noise * 255, then clipped to 0..255.
The box (x0, y0, x1, y1), x1/y1 exclusive, is the item's tight box: the smallest box holding every
pixel of the 28 x 28 item that is > 0, moved to where it was pasted. It lies inside the canvas.

Canvases are cached as .npy files in the user's data cache (~/.cache/lico-tune/data/placed_fmnist/
<key>; data.root only says where Fashion-MNIST is read from), key = a hash of the generation
parameters (data.placed) and the format version, written once under a FileLock (atomic renames,
meta.json last) and opened memory-mapped (a trial reads only the images it uses). Generating all
70,000 canvases at 64 px takes ~25-45 s on one loaded CPU core and ~290 MB of disk.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from . import fashion_mnist
from .errors import Digest, Probe
from .paths import RawSplits, default_root, download_lock

NAME = "placed_fmnist"
FORMAT_VERSION = 1          # bump when the generator changes: old caches are then never read
ITEM = 28                   # Fashion-MNIST's item size
CHUNK = 4096                # canvases generated per vectorised step (bounds memory)


def params_of(cfg) -> dict:
    """The generation parameters (a PlacedConfig) as a plain dict, with the format version."""
    p = cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else dict(cfg)
    return {**p, "format_version": FORMAT_VERSION}


def cache_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def tight_boxes(items: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 items -> (N, 4) int boxes (x0, y0, x1, y1) of their pixels > 0, x1/y1
    exclusive; an all-zero item gets the whole window."""
    on = items > 0
    rows, cols = on.any(2), on.any(1)                                          # (N, H), (N, W)
    h, w = items.shape[1:]

    def span(a: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        first = np.where(a.any(1), a.argmax(1), 0)
        last = np.where(a.any(1), n - a[:, ::-1].argmax(1), n)
        return first, last

    y0, y1 = span(rows, h)
    x0, x1 = span(cols, w)
    return np.stack([x0, y0, x1, y1], 1).astype(np.int64)


def _paste_max(canvas: np.ndarray, patch: np.ndarray, top: np.ndarray, left: np.ndarray) -> None:
    """canvas (n, S, S) float32 <- max(canvas, patch) at (top, left) per image; patch (n, h, w)."""
    n, h, w = patch.shape
    rows = top[:, None, None] + np.arange(h)[None, :, None]                   # (n, h, 1)
    cols = left[:, None, None] + np.arange(w)[None, None, :]                  # (n, 1, w)
    idx = np.arange(n)[:, None, None]
    canvas[idx, rows, cols] = np.maximum(canvas[idx, rows, cols], patch)


def _other_class(rng: np.random.Generator, labels: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Random indices into labels whose label differs from `own` (n,), by vectorised redraws."""
    pick = rng.integers(0, len(labels), len(own))
    for _ in range(64):
        same = labels[pick] == own
        if not same.any():
            return pick
        pick[same] = rng.integers(0, len(labels), int(same.sum()))
    raise ValueError("placed_fmnist clutter: could not find items of another class (one class only?)")


def generate(items: np.ndarray, labels: np.ndarray, params: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Canvases for every item: items (N, 28, 28) uint8, labels (N,) -> (images (N, S, S) uint8,
    boxes (N, 4) int64). The same (items, params, seed) give the same result."""
    S, n_clutter, cs = int(params["canvas"]), int(params["clutter"]), int(params["clutter_size"])
    if S < ITEM:
        raise ValueError(f"data.placed.canvas = {S} is smaller than the {ITEM} px items; use at least {ITEM}.")
    if not 1 <= cs <= ITEM:
        raise ValueError(f"data.placed.clutter_size = {cs} must lie in 1..{ITEM}.")
    rng = np.random.default_rng(seed)
    n = len(items)
    out = np.empty((n, S, S), np.uint8)
    boxes = np.empty((n, 4), np.int64)
    item_box = tight_boxes(items)                                             # (N, 4) inside the 28 px window
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        m = e - s
        canvas = np.zeros((m, S, S), np.float32)
        for _ in range(n_clutter):
            src = _other_class(rng, labels, labels[s:e])
            oy, ox = rng.integers(0, ITEM - cs + 1, (2, m))                   # crop window in the source item
            crop = items[src[:, None, None], oy[:, None, None] + np.arange(cs)[None, :, None],
                         ox[:, None, None] + np.arange(cs)[None, None, :]].astype(np.float32)   # (m, cs, cs)
            crop *= rng.uniform(*params["clutter_contrast"], m).astype(np.float32)[:, None, None]
            top, left = rng.integers(0, S - cs + 1, (2, m))
            _paste_max(canvas, crop, top, left)
        item = items[s:e].astype(np.float32) * rng.uniform(*params["item_contrast"], m).astype(np.float32)[:, None, None]
        top, left = rng.integers(0, S - ITEM + 1, (2, m))
        _paste_max(canvas, item, top, left)
        if params["noise"] > 0:
            noise = rng.standard_normal(canvas.shape, dtype=np.float32)
            noise *= np.float32(params["noise"] * 255.0)
            canvas += noise
        canvas += np.float32(0.5)                                             # round half up on the cast
        np.clip(canvas, 0, 255, out=canvas)
        out[s:e] = canvas.astype(np.uint8)
        boxes[s:e] = item_box[s:e] + np.stack([left, top, left, top], 1)
    return out, boxes


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 images scaled to [0, 1] (chunked float64 sums)."""
    s = s2 = 0.0
    for i in range(0, len(images), CHUNK):
        x = images[i:i + CHUNK].astype(np.float64) / 255.0
        s += x.sum()
        s2 += (x * x).sum()
    n = images.size
    mean = s / n
    return float(mean), float(np.sqrt(max(s2 / n - mean * mean, 1e-12)))


def _split_seed(seed: int, split: str) -> list[int]:
    return [int(seed), 0 if split == "train" else 1]


def cache_dir(cfg) -> Path:
    """Where the canvases of data config `cfg` are cached: the user's data cache, always (data.root
    says where Fashion-MNIST is read from, which may be a read-only system folder)."""
    return default_root(NAME) / cache_key(params_of(cfg.placed))


def _mmap(path: Path) -> torch.Tensor:
    arr = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():                       # read-only memory map: never written in place
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def load(cfg) -> RawSplits:
    """The placed canvases for data config `cfg` (generated and cached on first use)."""
    params = params_of(cfg.placed)
    folder = cache_dir(cfg)
    files = {f"{k}_{split}": folder / f"{k}_{split}.npy" for k in ("images", "labels", "boxes")
             for split in ("train", "test")}
    files["meta"] = folder / "meta.json"                                    # written last: marks a whole cache
    if not all(p.is_file() for p in files.values()):
        with download_lock(folder.parent):
            if not all(p.is_file() for p in files.values()):
                source = fashion_mnist.load(cfg)                             # one-paragraph error if missing
                folder.mkdir(parents=True, exist_ok=True)
                k = params["max_items"]
                for split, x, y in (("train", source.x_train[:k], source.y_train[:k]),
                                    ("test", source.x_test[:k], source.y_test[:k])):
                    ss = np.random.SeedSequence(_split_seed(params["seed"], split))
                    imgs, bx = generate(x[:, 0].numpy(), y.numpy(), params, int(ss.generate_state(1)[0]))
                    for key, arr in (("images", imgs[:, None]), ("labels", y.numpy()), ("boxes", bx)):
                        tmp = folder / f".{key}_{split}.tmp.npy"
                        np.save(tmp, arr)
                        tmp.replace(files[f"{key}_{split}"])                  # atomic: readers see whole files
                    if split == "train":
                        mean, std = pixel_stats(imgs)
                meta = {**params, "source": source.source, "mean": mean, "std": std}
                tmp = folder / ".meta.json.tmp"
                tmp.write_text(json.dumps(meta, indent=1))
                tmp.replace(files["meta"])
    meta = json.loads(files["meta"].read_text())
    t = {k: _mmap(p) for k, p in files.items() if k != "meta"}
    return RawSplits(t["images_train"], t["labels_train"].long(), t["images_test"], t["labels_test"].long(),
                     source=str(folder), boxes_train=t["boxes_train"], boxes_test=t["boxes_test"],
                     mean=(round(meta["mean"], 4),), std=(round(meta["std"], 4),))


def require(cfg, probe: Probe) -> None:
    """Fashion-MNIST, which the canvases are generated from (cached on first use)."""
    fashion_mnist.require(cfg, probe)


def identity(cfg, digest: Digest) -> dict:
    """The canvases are a deterministic function of Fashion-MNIST and the generation parameters: those
    two identify them (a digest of the whole cache folder would change with every other parameter
    set cached beside them)."""
    params = params_of(cfg.placed)
    return {"name": NAME, "generated_from": fashion_mnist.identity(cfg, digest), "params": params,
            "cache_key": cache_key(params), "path": str(cache_dir(cfg))}
