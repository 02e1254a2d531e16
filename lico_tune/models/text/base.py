"""The prompt learner: learnable CoOp context vectors spliced into K class prompts, run through a
text encoder (frozen by default) to give each class's text features.

One interface over two encoder families (hf.py: Hugging Face BERT-style encoders such as
MiniLM; openclip.py: open_clip CLIP text towers). A subclass supplies `embed_tokens` (token ids
-> embeddings) and `encode` (embeddings -> pooled and per-token features); this base class owns the
context vectors and the three ways of turning prompts into features (TextConfig.features):

  'eot'        K prompts, one pooled feature each                       -> points (K, 1, D)
  'per_token'  K prompts; outputs at the M context slots + the class
               name (mean over its tokens)                              -> points (K, M+1, D)
  'rolled'     K*M prompts in one batch: copy m has the context rolled
               by m (torch.roll along the context axis); pooled each   -> points (K, M, D)

`pooled` (K, D) is the class feature the MM loss reads: the first point or the mean over points
(text.pooled, resolved by TextConfig.pooling).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from ...errors import BadInput
from ...spec import TextConfig
from .prompts import PromptLayout, build_layout


class TextEncoderMissing(BadInput, FileNotFoundError):
    """A text encoder's weight file is not here; the message says what, where we looked, and how to get it."""


class TextEncoderCorrupt(TextEncoderMissing):
    """A text encoder's weight file exists but cannot be read as a checkpoint (no usable weights)."""


@dataclass
class TextFeatures:
    points: Tensor  # (K, N, D): the N text features of each class
    pooled: Tensor  # (K, D): the class feature MM reads (the first point, or the mean over points)

    @classmethod
    def of(cls, points: Tensor, pooling: str) -> "TextFeatures":
        """Features from points (K, N, D) with `pooled` by TextConfig.pooling ('first' or 'mean')."""
        return cls(points=points, pooled=points[:, 0] if pooling == "first" else points.mean(dim=1))


class PromptLearner(nn.Module):
    """Learnable context + a text encoder. Subclasses set `encoder`, `dim` and call `_init_prompts`."""

    encoder: nn.Module
    dim: int  # D, the width of the features this returns
    learnable = True  # context vectors (and, with finetune, the encoder) can change the features

    def __init__(self, cfg: TextConfig, class_names: list[str]):
        super().__init__()
        if not class_names:
            raise ValueError("the prompt learner needs at least one class name")
        self.cfg = cfg
        self.class_names = list(class_names)
        self.features = cfg.features
        self.class_specific = cfg.class_specific
        self.shuffle_ctx = cfg.shuffle_ctx
        self.finetune = cfg.finetune
        self.pooling = cfg.pooling

    # ------------------------------------------------------------------ subclass hooks

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Token ids (..., L) -> token embeddings (..., L, W)."""
        raise NotImplementedError

    def encode(self, embeds: Tensor, lengths: Tensor, eot_pos: Tensor, need_tokens: bool
               ) -> tuple[Tensor, Optional[Tensor]]:
        """embeds (B, L, W) of B prompts with `lengths` real tokens -> pooled (B, D) and, if
        need_tokens, the per-token outputs (B, L, D) in the same feature space."""
        raise NotImplementedError

    # ------------------------------------------------------------------ set-up

    def _init_prompts(self, names_ids: list[list[int]], prefix: list[int], period: list[int],
                      suffix: list[int], placeholder: int, pad_id: int, max_length: int,
                      ctx_init_ids: Optional[list[int]], pad_to: Optional[int] = None) -> None:
        """Freeze the encoder (unless finetune), build the layout and the context parameter."""
        if not self.finetune:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        n_ctx = len(ctx_init_ids) if ctx_init_ids is not None else self.cfg.n_ctx
        if n_ctx < 1:
            raise ValueError(f"text.ctx_init '{self.cfg.ctx_init}' has no tokens")
        self.n_ctx = n_ctx
        layout = build_layout(names_ids, n_ctx, self.cfg.class_token_position, prefix, period, suffix,
                              placeholder, pad_id, max_length, self.class_names, pad_to=pad_to)
        for name in ("ids", "lengths", "ctx_pos", "name_weight", "eot_pos"):
            self.register_buffer(name, getattr(layout, name), persistent=False)
        # roll_idx[r, j] = (j - r) mod M, so ctx[..., roll_idx[r], :] == torch.roll(ctx, r, dims=-2)
        ar = torch.arange(n_ctx)
        self.register_buffer("roll_idx", (ar[None, :] - ar[:, None]) % n_ctx, persistent=False)

        K = len(self.class_names)
        with torch.no_grad():
            if ctx_init_ids is not None:
                init = self.embed_tokens(torch.tensor(ctx_init_ids, device=self.ids.device)).float()  # (M, W)
            else:
                width = self.embed_tokens(self.ids[:1, :1]).shape[-1]
                init = torch.randn(n_ctx, width) * 0.02
            init = init.detach().clone()
            # context_copies 'untied' (released code): M separate copies, initialised identical.
            self.untied = self.features == "rolled" and self.cfg.context_copies == "untied"
            if self.untied:
                init = init[None].repeat(n_ctx, 1, 1)  # (M copies, M slots, W)
            self.ctx = nn.Parameter(init.repeat(K, *[1] * init.ndim) if self.class_specific else init)  # (K|., [M,] M, W)
            if not self.finetune:
                # The embedding table is frozen: embed the prompt tokens once.
                self.register_buffer("base_embeds", self.embed_tokens(self.ids).detach(), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.ids.device

    @property
    def n_points(self) -> int:
        return {"eot": 1, "per_token": self.n_ctx + 1, "rolled": self.n_ctx}[self.features]

    def train(self, mode: bool = True) -> "PromptLearner":
        super().train(mode)
        if not self.finetune:
            self.encoder.eval()  # a frozen encoder never runs dropout
        return self

    # ------------------------------------------------------------------ forward

    def context_vectors(self) -> Tensor:
        """The context used by this forward: (K or 1, M, W); order shuffled in training if shuffle_ctx."""
        ctx = self.ctx if self.class_specific else self.ctx[None]
        if self.shuffle_ctx and self.training:
            ctx = ctx[:, torch.randperm(self.n_ctx, device=ctx.device)]
        return ctx

    def prompt_embeddings(self, ctx: Optional[Tensor] = None) -> Tensor:
        """Token embeddings (K, L, W) of the K prompts with the context spliced in (no rolling)."""
        ctx = self.context_vectors() if ctx is None else ctx
        base = self.base_embeds if not self.finetune else self.embed_tokens(self.ids)  # (K, L, W)
        K, L, W = base.shape
        pos = self.ctx_pos[..., None].expand(K, self.n_ctx, W)
        return base.scatter(1, pos, ctx.to(base.dtype).expand(K, -1, -1))

    def forward(self) -> TextFeatures:
        ctx = None if self.untied else self.context_vectors()  # (K|1, M, W)
        K, M = len(self.class_names), self.n_ctx
        if self.features == "rolled":
            base = self.base_embeds if not self.finetune else self.embed_tokens(self.ids)  # (K, L, W)
            L, W = base.shape[1:]
            if self.untied:  # (K|1, M copies, M slots, W): the copies themselves, slot order shuffled if asked
                rolled = (self.ctx if self.class_specific else self.ctx[None]).to(base.dtype)
                if self.shuffle_ctx and self.training:
                    rolled = rolled[:, :, torch.randperm(M, device=rolled.device)]
            else:
                rolled = ctx[:, self.roll_idx].to(base.dtype)  # (K|1, M copies, M slots, W)
            pos = self.ctx_pos[:, None, :, None].expand(K, M, M, W)
            x = base[:, None].expand(K, M, L, W).scatter(2, pos, rolled.expand(K, -1, -1, -1))
            pooled, _ = self.encode(x.reshape(K * M, L, W), self.lengths.repeat_interleave(M),
                                    self.eot_pos.repeat_interleave(M), need_tokens=False)
            points = pooled.view(K, M, -1)  # (K, M, D)
        else:
            x = self.prompt_embeddings(ctx)  # (K, L, W)
            pooled, tokens = self.encode(x, self.lengths, self.eot_pos, need_tokens=self.features == "per_token")
            if self.features == "eot":
                points = pooled[:, None]  # (K, 1, D)
            else:
                D = tokens.shape[-1]
                at_ctx = tokens.gather(1, self.ctx_pos[..., None].expand(K, M, D))  # (K, M, D)
                name = torch.einsum("kl,kld->kd", self.name_weight.to(tokens.dtype), tokens)  # (K, D)
                points = torch.cat([at_ctx, name[:, None]], dim=1)  # (K, M+1, D)
        return TextFeatures.of(points, self.pooling)


def clean_class_name(name: str) -> str:
    """'aquarium_fish' -> 'aquarium fish' (as CoOp does)."""
    return name.replace("_", " ").strip()


def hf_cache_dir() -> str:
    """The Hugging Face hub cache (where both encoder families look for downloaded weights)."""
    try:
        from huggingface_hub import constants
        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub always comes with transformers
        return os.path.expanduser("~/.cache/huggingface/hub")


__all__ = ["TextFeatures", "PromptLearner", "TextEncoderMissing", "TextEncoderCorrupt", "PromptLayout",
           "clean_class_name", "hf_cache_dir"]
