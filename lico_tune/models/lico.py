"""The LICO model: an image classifier plus the text side that only training uses.

At inference only `classifier` runs, so LICO adds no cost there. During training `forward`
also returns the manifold-matching (MM) and optimal-transport (OT) loss terms, and the
anti-collapse penalty on OT's text points when lico.ot.spread_weight > 0.

OT's text points (lico.ot.anchors): 'learned' = h(text points), h an MLP trained with the rest;
'frozen' = a fixed random orthogonal projection of the centred text points of the untrained
prompts, computed once at construction (a buffer: OT cannot move its own targets).

When nothing can change the text features during a trial (no term sends a gradient to the
context, the encoder is frozen, the context is not shuffled), they are computed once and reused
(`static_text`): the same values as the per-step forward, without a text-encoder pass per step.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..compute import autocast
from ..losses import OTInfo, mm_loss, ot_solve, spread_penalty
from ..spec import LicoConfig
from .backbones import ImageClassifier
from .temperature import Temperature
from .text import PromptLearner, TextFeatures


def image_points(fmap: Tensor, points: str) -> Tensor:
    """OT's image points of feature maps (B, C, H, W): 'channels' (B, C, H*W), 'spatial' (B, H*W, C)."""
    flat = fmap.flatten(2)  # (B, C, H*W)
    return flat.transpose(1, 2) if points == "spatial" else flat


def random_orthogonal(rows: int, cols: int) -> Tensor:
    """A (rows, cols) matrix with orthonormal columns (rows >= cols) or rows (rows < cols), drawn
    from torch's generator (seeded by the trial)."""
    q, r = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols)))
    q = q * torch.sign(torch.diagonal(r))  # unique QR: a Haar-distributed orthogonal matrix
    return q if rows >= cols else q.T


class LicoModel(nn.Module):
    def __init__(self, classifier: ImageClassifier, prompts: Optional[PromptLearner],
                 cfg: LicoConfig, feature_shape: tuple[int, int, int], proj_hidden: int,
                 proj_dropout: float, label_smoothing: float = 0.0):
        super().__init__()
        self.classifier = classifier
        self.cfg = cfg
        self.label_smoothing = label_smoothing  # train.label_smoothing: CE's, here and in health's probes
        self.prompts = prompts if cfg.enabled else None
        channels, height, width = feature_shape
        # 'channels': C points in R^(H*W); 'spatial': H*W points in R^C. Text is projected to match.
        point_dim = height * width if cfg.ot.points == "channels" else channels
        self.proj = None
        self.uses_ot = self.prompts is not None and cfg.beta > 0
        if self.uses_ot and cfg.ot.anchors == "learned":
            self.proj = nn.Sequential(
                nn.Linear(self.prompts.dim, proj_hidden), nn.ReLU(inplace=True),
                nn.Dropout(proj_dropout), nn.Linear(proj_hidden, point_dim))
        if self.uses_ot and cfg.ot.anchors == "frozen":
            with torch.no_grad():
                was = self.prompts.training
                points = self.prompts.eval()().points.float()  # (K, N, D) of the untrained prompts
                self.prompts.train(was)
                centred = points - points.mean(dim=(0, 1))
                self.register_buffer("anchors", centred @ random_orthogonal(points.shape[-1], point_dim))  # (K, N, P)
        else:
            self.anchors = None
        self.temperature = Temperature(cfg.mm)
        self._static: Optional[TextFeatures] = None
        # Read by health.py after a forward (tensors, no device sync): the last OT solve's
        # diagnostics, and, when keep_fmap is set, the feature map F with its graph (gradient probes).
        self.last_ot: Optional[OTInfo] = None
        self.last_fmap: Optional[Tensor] = None
        self.keep_fmap = False

    # ------------------------------------------------------------------ the text side

    @property
    def needs_text(self) -> bool:
        """Whether a training step reads the text features (MM, or OT with learned anchors)."""
        return self.prompts is not None and (self.cfg.alpha > 0 or self.proj is not None)

    @property
    def static_text(self) -> bool:
        """True when no term can change the text features during training: MM's text side detached
        (or MM off), OT's anchors frozen, without a gradient, or OT off, no spread penalty, a frozen
        encoder and an unshuffled context; or no learnable text side at all (text.encoder 'static').
        Then they are computed once (same values)."""
        if self.prompts is None:
            return False
        lico, text = self.cfg, self.prompts.cfg
        if not self.prompts.learnable:
            return True
        mm_moves = lico.alpha > 0 and lico.mm.text_gradient
        ot_moves = self.proj is not None and (lico.ot.gradient == "envelope" or lico.ot.spread_weight > 0)
        return not (mm_moves or ot_moves or text.finetune or text.shuffle_ctx)

    def text_features(self) -> TextFeatures:
        """The prompts' features (points (K, N, D), pooled (K, D)) in float32; computed once when static."""
        if self._static is not None:
            return self._static
        with autocast(self.prompts.device.type, self.prompts.cfg.precision):  # text.precision
            text = self.prompts()
        text = TextFeatures(points=text.points.float(), pooled=text.pooled.float())
        if self.static_text and self.training:
            self._static = TextFeatures(points=text.points.detach(), pooled=text.pooled.detach())
        return text

    def load_state_dict(self, *args, **kwargs):
        self._static = None  # new weights: recompute the cached text features
        return super().load_state_dict(*args, **kwargs)

    def ot_text_points(self, text: Optional[TextFeatures]) -> Tensor:
        """OT's text points (K, N, P): the frozen anchors, or h of the text points."""
        return self.anchors if self.anchors is not None else self.proj(text.points)

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """logits (B, K) and the LICO terms {'mm', 'ot', 'spread': scalars} that are switched on."""
        logits, fmap, emb = self.classifier.forward_all(x)  # (B,K), (B,C,H,W), (B,C)
        terms: dict[str, Tensor] = {}
        if self.prompts is None:
            return logits, terms
        text = self.text_features() if self.needs_text else None
        if self.keep_fmap:
            self.last_fmap = fmap
        if self.cfg.alpha > 0:
            terms["mm"] = self.mm_term(emb, y, text)
        if self.uses_ot:
            ot = self.cfg.ot
            class_points = self.ot_text_points(text)  # (K, N, P)
            if ot.target == "all_classes":  # every image to all K*N prompts (January 2024 code)
                text_points = class_points.flatten(0, 1)[None].expand(len(y), -1, -1)  # (B, K*N, P)
            else:
                text_points = class_points[y]  # (B, N, P): the image's own class
            terms["ot"], self.last_ot = ot_solve(
                image_points(fmap, ot.points).float(), text_points.float(), epsilon=ot.epsilon,
                max_iter=ot.max_iter, tol=ot.tol, gradient=ot.gradient, solver=ot.solver)
            if ot.spread_weight > 0:
                terms["spread"] = spread_penalty(class_points)
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

    def weighted(self, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each LICO term times its weight (alpha, beta, spread_weight): what enters the loss."""
        weights = {"mm": self.cfg.alpha, "ot": self.cfg.beta, "spread": self.cfg.ot.spread_weight}
        return {k: weights[k] * v for k, v in terms.items()}

    def ce(self, logits: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy of logits (B, K) against labels y (B,), with train.label_smoothing."""
        return nn.functional.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)

    def loss(self, logits: Tensor, y: Tensor, terms: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Total L = CE + alpha*MM + beta*OT (+ spread_weight*spread), and its parts (detached)."""
        ce = self.ce(logits, y)
        total = ce
        for term in self.weighted(terms).values():
            total = total + term
        parts = {"ce": ce.detach(), **{k: v.detach() for k, v in terms.items()}}
        return total, parts
