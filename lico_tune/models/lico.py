"""The LICO model: an image classifier plus the text side that only training uses.

At inference only `classifier` runs, so LICO adds no cost there. During training `forward`
also returns the manifold-matching (MM) and optimal-transport (OT) loss terms.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..losses import OTInfo, mm_loss, ot_solve
from ..precision import autocast
from ..spec import LicoConfig
from .backbones import ImageClassifier
from .temperature import Temperature
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
        self.temperature = Temperature(cfg.mm)
        # Read by health.py after a forward (tensors, no device sync): the last OT solve's
        # diagnostics, and, when keep_fmap is set, the feature map F with its graph (grad shares).
        self.last_ot: Optional[OTInfo] = None
        self.last_fmap: Optional[Tensor] = None
        self.keep_fmap = False

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """logits (B, K) and the LICO terms {'mm': scalar, 'ot': scalar} that are switched on."""
        logits, fmap, emb = self.classifier.forward_all(x)  # (B,K), (B,C,H,W), (B,C)
        terms: dict[str, Tensor] = {}
        if self.prompts is None:
            return logits, terms
        with autocast(x.device.type, self.prompts.cfg.precision):  # text.precision
            text = self.prompts()  # points (K, N, D), pooled (K, D)
        text = TextFeatures(points=text.points.float(), pooled=text.pooled.float())
        if self.keep_fmap:
            self.last_fmap = fmap
        if self.cfg.alpha > 0:
            terms["mm"] = self.mm_term(emb, y, text)
        if self.cfg.beta > 0:
            text_points = self.proj(text.points)  # (K, N, P)
            if self.cfg.ot.target == "all_classes":  # every image to all K*N prompts (released code)
                text_points = text_points.flatten(0, 1)[None].expand(len(y), -1, -1)  # (B, K*N, P)
            else:
                text_points = text_points[y]  # (B, N, P): the image's own class
            image_points = fmap.flatten(2)  # (B, C, H*W)
            if self.cfg.ot.points == "spatial":
                image_points = image_points.transpose(1, 2)  # (B, H*W, C)
            ot = self.cfg.ot
            terms["ot"], self.last_ot = ot_solve(
                image_points.float(), text_points.float(), epsilon=ot.epsilon, max_iter=ot.max_iter,
                tol=ot.tol, gradient=ot.gradient, solver=ot.solver)
        return logits, terms

    def mm_term(self, emb: Tensor, y: Tensor, text: TextFeatures, temperature: Optional[float] = None) -> Tensor:
        """L_MM of image embeddings emb (B, C) against the pooled text features of labels y, at the
        model's temperatures, or at one fixed `temperature` for both sides (health.py's reference)."""
        mm = self.cfg.mm
        if temperature is None:
            tau, target_tau = self.temperature(), self.temperature.target_tau()
        else:
            tau, target_tau = temperature, None
        target = text.pooled if mm.text_gradient else text.pooled.detach()  # (K, D)
        return mm_loss(emb.float(), target[y].float(), tau, sign=mm.sign, distance=mm.distance,
                       target_temperature=target_tau)

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
