"""text.encoder 'static': class text points without language (a control of this project).

No tokenizer, no weights, nothing learnable: K*N fixed unit vectors of width text.static.width,
drawn once from text.static.seed (fixed per experiment), N points per class as the feature mode
asks ('eot' 1, 'per_token' M+1, 'rolled' M). 'orthogonal': all K*N points mutually orthogonal
(needs K*N <= width); 'random': independent Gaussian directions. The same TextFeatures as a
prompt learner, so MM, OT and the health checks read them unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import SpecError
from ...spec import TextConfig
from .base import TextFeatures


def static_points(kind: str, classes: int, points: int, width: int, seed: int) -> torch.Tensor:
    """Unit vectors (classes, points, width) from a private generator (the trial's stream is untouched)."""
    gen = torch.Generator().manual_seed(seed)
    n = classes * points
    if kind == "orthogonal":
        if n > width:
            raise SpecError(f"text.static.vectors: 'orthogonal' needs at most text.static.width = {width} points, "
                            f"but {classes} classes x {points} points per class make {n}; raise text.static.width, "
                            f"lower text.n_ctx, or use vectors 'random'")
        q, r = torch.linalg.qr(torch.randn(width, n, generator=gen, dtype=torch.float64))
        vectors = (q * torch.sign(torch.diagonal(r))).T  # (n, width), orthonormal rows
    else:
        vectors = torch.randn(n, width, generator=gen, dtype=torch.float64)
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return vectors.float().reshape(classes, points, width)


def require(cfg: TextConfig, probe) -> None:
    """Nothing on disk: the vectors are drawn from text.static (the registry's `require`)."""


def identity(cfg: TextConfig, digest) -> dict:
    """How a result names the static encoder: no weights, the fields that draw the vectors."""
    return {"model": None, "pretrained": None, "weights": "none (fixed class vectors)",
            **cfg.static.model_dump(mode="json")}


class StaticText(nn.Module):
    """The prompt learner's interface over fixed class vectors: forward() -> TextFeatures."""

    learnable = False

    def __init__(self, cfg: TextConfig, class_names: list[str]):
        super().__init__()
        if not class_names:
            raise ValueError("static text needs at least one class")
        self.cfg = cfg
        self.class_names = list(class_names)
        self.dim = cfg.static.width
        self.n_ctx = cfg.n_ctx
        self.n_points = {"eot": 1, "per_token": cfg.n_ctx + 1, "rolled": cfg.n_ctx}[cfg.features]
        self.register_buffer("points", static_points(cfg.static.vectors, len(class_names), self.n_points,
                                                     cfg.static.width, cfg.static.seed))  # (K, N, D)

    @property
    def device(self) -> torch.device:
        return self.points.device

    def forward(self) -> TextFeatures:
        return TextFeatures.of(self.points, self.cfg.pooling)
