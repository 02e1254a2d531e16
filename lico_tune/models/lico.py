"""The LICO model: an image classifier plus the text side that only training uses.

At inference only `classifier` runs, so LICO adds no cost there. During training `forward`
also returns the manifold-matching (MM) and optimal-transport (OT) loss terms.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ..losses import mm_loss, ot_loss
from ..precision import autocast
from ..spec import LicoConfig
from .backbones import ImageClassifier
from .text import PromptLearner, TextFeatures


class LicoModel(nn.Module):
    def __init__(self, classifier: ImageClassifier, prompts: Optional[PromptLearner],
                 cfg: LicoConfig, feature_shape: tuple[int, int, int], proj_hidden: int = 512,
                 proj_dropout: float = 0.0):
        super().__init__()
        self.classifier = classifier
        self.cfg = cfg
        self.prompts = prompts if cfg.enabled else None
        channels, height, width = feature_shape
        # 'channels': C points in R^(H*W); 'spatial': H*W points in R^C. Text is projected to match.
        point_dim = height * width if cfg.ot.points == "channels" else channels
        self.proj = None
        if self.prompts is not None and cfg.beta > 0:
            self.proj = nn.Sequential(
                nn.Linear(self.prompts.dim, proj_hidden), nn.ReLU(inplace=True),
                nn.Dropout(proj_dropout), nn.Linear(proj_hidden, point_dim))
        log_tau = torch.tensor(math.log(cfg.mm.temperature))
        if cfg.mm.learnable_temperature:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """logits (B, K) and the LICO terms {'mm': scalar, 'ot': scalar} that are switched on."""
        logits, fmap, emb = self.classifier.forward_all(x)  # (B,K), (B,C,H,W), (B,C)
        terms: dict[str, Tensor] = {}
        if self.prompts is None:
            return logits, terms
        with autocast(x.device.type, self.prompts.cfg.precision):  # text.precision
            text = self.prompts()  # points (K, N, D), pooled (K, D)
        text = TextFeatures(points=text.points.float(), pooled=text.pooled.float())
        if self.cfg.alpha > 0:
            terms["mm"] = mm_loss(emb.float(), text.pooled[y].float(), self.log_tau.exp(),
                                  sign=self.cfg.mm.sign)
        if self.cfg.beta > 0:
            text_points = self.proj(text.points)[y]  # (B, N, P)
            image_points = fmap.flatten(2)  # (B, C, H*W)
            if self.cfg.ot.points == "spatial":
                image_points = image_points.transpose(1, 2)  # (B, H*W, C)
            ot = self.cfg.ot
            terms["ot"] = ot_loss(image_points.float(), text_points.float(), epsilon=ot.epsilon,
                                  max_iter=ot.max_iter, tol=ot.tol, gradient=ot.gradient)
        return logits, terms

    def loss(self, logits: Tensor, y: Tensor, terms: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Total L = CE + alpha*MM + beta*OT, and its parts (detached)."""
        ce = nn.functional.cross_entropy(logits.float(), y)
        total = ce
        if "mm" in terms:
            total = total + self.cfg.alpha * terms["mm"]
        if "ot" in terms:
            total = total + self.cfg.beta * terms["ot"]
        parts = {"ce": ce.detach(), **{k: v.detach() for k, v in terms.items()}}
        return total, parts
