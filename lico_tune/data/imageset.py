"""In-memory image sets: uint8 images, int64 labels, vectorised batch augmentation.

Everything but imagefolder fits in memory, so a batch is one gather from a uint8 tensor plus one
vectorised crop/flip, with no per-image Python and no DataLoader workers.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def crop_pad_for(size: int) -> int:
    """Zero padding of the random crop: 4 px at 32 px (the recipe), scaled with the image size."""
    return max(1, round(4 * size / 32))


def augment_uint8(x: torch.Tensor, pad: int, flip: bool,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random crop with zero padding `pad` and (if `flip`) a horizontal flip with p = 0.5, each
    image drawn independently, in one gather. x: (B, C, H, W) any dtype -> same shape and dtype.
    Random numbers come from `generator` (CPU; torch's global RNG when None)."""
    B, C, H, W = x.shape
    offs = torch.randint(0, 2 * pad + 1, (B, 2), generator=generator)        # (B, 2) top, left
    rows = offs[:, :1] + torch.arange(H)                                      # (B, H)
    cols = offs[:, 1:] + torch.arange(W)                                      # (B, W)
    if flip:
        flipped = torch.rand(B, generator=generator) < 0.5                    # (B,)
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    Hp, Wp = H + 2 * pad, W + 2 * pad
    xp = x.new_zeros(B, C, Hp, Wp)                                            # (B, C, Hp, Wp)
    xp[:, :, pad:pad + H, pad:pad + W] = x
    src = (rows[:, :, None] * Wp + cols[:, None, :]).view(B, 1, H * W)        # (B, 1, H*W) flat source pixel
    src = src.to(x.device).expand(B, C, H * W)
    return torch.gather(xp.view(B, C, Hp * Wp), 2, src).view(B, C, H, W)     # (B, C, H, W)


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Bilinear (antialiased) resize of uint8 (N, C, H, W) to (N, C, size, size), in chunks."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for s in range(0, images.shape[0], chunk):
        x = images[s:s + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[s:s + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


class ImageSet(Dataset):
    """An in-memory split. images: uint8 (N, C, H, W); labels: int64 (N,); boxes: optional
    int64 (N, 4) ground-truth boxes (x0, y0, x1, y1) of the object, carried through subsets.

    `batch(indices)` is the fast path (vectorised augmentation, normalisation). `__getitem__`
    returns one (normalised float (C, H, W), int label) for generic code (CAM libraries, a
    DataLoader); it augments too when the set does, drawing from torch's global RNG.
    """

    file_backed = False

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float],
                 std: Sequence[float], augment: bool = False, pad: int = 4, flip: bool = True,
                 boxes: Optional[torch.Tensor] = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"ImageSet needs uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"mean/std need {images.shape[1]} channels, got {len(mean)}/{len(std)}")
        if boxes is not None and tuple(boxes.shape) != (images.shape[0], 4):
            raise ValueError(f"{images.shape[0]} images but boxes of shape {tuple(boxes.shape)}; expected (N, 4)")
        self.images = images
        self.labels = labels.long()
        self.boxes = None if boxes is None else boxes.long()     # (N, 4) x0, y0, x1, y1 (x1/y1 exclusive) or None
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = bool(augment)
        self.pad = int(pad)
        self.flip = bool(flip)
        self._stats: dict = {}

    # ------------------------------------------------------------------ shape
    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __repr__(self) -> str:
        return (f"ImageSet(n={len(self)}, shape={tuple(self.images.shape[1:])}, augment={self.augment}, "
                f"pad={self.pad}, flip={self.flip})")

    # ------------------------------------------------------------------ normalisation
    def _mean_std(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._stats:
            m = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)      # (1, C, 1, 1)
            s = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
            self._stats[key] = (m, s)
        return self._stats[key]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 1]) (B, C, H, W) -> normalised float32."""
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        m, s = self._mean_std(x.device)
        return (x - m) / s

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (B, C, H, W) -> float in [0, 1] (for display)."""
        m, s = self._mean_std(x.device)
        return (x * s + m).clamp(0, 1)

    # ------------------------------------------------------------------ access
    def batch(self, indices: torch.Tensor, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device | str] = None,
              augment: Optional[bool] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x float32 normalised (B, C, H, W), y int64 (B,)) for `indices`, on `device` (default:
        where the images are). Augments when `augment` (default: the set's own setting)."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        idx = indices.to(self.images.device)
        x, y = self.images[idx], self.labels[idx]                             # (B, C, H, W) uint8
        if device is not None:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
        if self.augment if augment is None else augment:
            x = augment_uint8(x, self.pad, self.flip, generator)
        return self.normalize(x), y

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.batch(torch.tensor([int(i)]))
        return x[0], int(y[0])

    # ------------------------------------------------------------------ views
    def _like(self, images: torch.Tensor, labels: torch.Tensor, augment: Optional[bool] = None,
              boxes: Optional[torch.Tensor] = None) -> "ImageSet":
        return ImageSet(images, labels, self.mean, self.std,
                        self.augment if augment is None else augment, self.pad, self.flip, boxes)

    def subset(self, indices: torch.Tensor) -> "ImageSet":
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.images.device)
        boxes = None if self.boxes is None else self.boxes[idx.to(self.boxes.device)]
        return self._like(self.images[idx], self.labels[idx], boxes=boxes)

    def with_images(self, images: torch.Tensor) -> "ImageSet":
        """The same labels, boxes and settings with other images of the same shape (e.g. patched)."""
        if images.shape != self.images.shape:
            raise ValueError(f"with_images: shape {tuple(images.shape)} != {tuple(self.images.shape)}")
        return self._like(images, self.labels, boxes=self.boxes)

    def with_augment(self, augment: bool) -> "ImageSet":
        """The same images (shared storage) with augmentation on or off."""
        return self._like(self.images, self.labels, augment, self.boxes)

    def to(self, device: torch.device | str) -> "ImageSet":
        """Move the uint8 images and labels (e.g. to the GPU, so a batch is a device-side gather)."""
        return self._like(self.images.to(device), self.labels.to(device), boxes=self.boxes)
