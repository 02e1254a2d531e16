"""Exact shared-prefix encoding for a causal (CLIP) text tower.

CLIP's text transformer is causal: the hidden state at position t depends on tokens 0..t only.
With the class token at the end and one context shared by all classes, every prompt starts with
the same P = M + 1 positions ([SOS] and the M context vectors), so their hidden states, at every
layer, are the same for all K classes (for 'rolled': the same for the K classes of one roll).
This module computes them once per distinct context (1 prefix for eot/per_token, M for rolled)
and runs only the class-name suffix positions (name, '.', [EOS], padding) through the blocks,
each suffix query attending to the cached prefix keys/values plus the suffix positions up to
itself. Same features as the plain forward (tests: to 1e-5, values and gradients w.r.t. the
context, for eot, per_token and rolled); ~3x fewer token positions for CLIP-B rolled on CIFAR-10.

Where the prefix is not shared (class token at the front or in the middle, class-specific
context) `shared_prefix_len` returns None and the learner runs the plain path. Hugging Face
encoders (BERT-style MiniLM) are bidirectional: the context's states depend on the class name,
so the trick is not exact there and is not used.

Blocks are run by hand (open_clip's ResidualAttentionBlock: x + ls_1(attn(ln_1(x))), then
x + ls_2(mlp(ln_2(x))), attn an nn.MultiheadAttention with packed q/k/v projections). Towers with
other blocks (open_clip's CustomResidualAttentionBlock, cross-attention, dropout, gradient
checkpointing) or a non-causal mask take the plain path.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Imports only torch (TextFeatures is imported where used): benchmarks/all.py loads this module on
# machines without the project's other dependencies.


def _supported_block(blk: nn.Module) -> bool:
    mha = getattr(blk, "attn", None)
    return (isinstance(mha, nn.MultiheadAttention) and mha._qkv_same_embed_dim and mha.bias_k is None
            and not mha.add_zero_attn and mha.dropout == 0.0 and not hasattr(blk, "ln_1_kv")
            and all(hasattr(blk, n) for n in ("ln_1", "ln_2", "mlp", "ls_1", "ls_2")))


def _is_causal(mask: Optional[Tensor], length: int) -> bool:
    if mask is None or mask.shape[-1] < length:
        return False
    blocked = torch.isinf(mask[:length, :length]) if mask.dtype != torch.bool else mask[:length, :length]
    return torch.equal(blocked.cpu(), torch.ones(length, length, dtype=torch.bool).triu(1))


def shared_prefix_len(learner) -> Optional[int]:
    """P if all K prompts of an open_clip learner share their first P positions ([SOS] + the
    shared context, nothing class-specific) and the tower is a supported causal one; else None."""
    enc = learner.encoder
    if learner.class_specific or getattr(enc, "pool_type", None) not in ("argmax", "eos"):
        return None
    if getattr(enc.transformer, "grad_checkpointing", False):
        return None
    if not all(_supported_block(b) for b in enc.transformer.resblocks):
        return None
    ids, ctx_pos = learner.ids, learner.ctx_pos  # (K, L), (K, M)
    if not _is_causal(enc.attn_mask, ids.shape[1]) or not bool((ctx_pos == ctx_pos[:1]).all()):
        return None
    p = int(ctx_pos.max()) + 1
    shared = bool((ids[:, :p] == ids[:1, :p]).all())
    if not shared or bool((learner.name_weight[:, :p] != 0).any()) or bool((learner.eot_pos < p).any()):
        return None
    return p if p < ids.shape[1] else None


def _block(blk: nn.Module, x: Tensor, past: Optional[tuple[Tensor, Tensor]]
           ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One ResidualAttentionBlock on x (B, S, W). past: the (k, v) (B, H, P, d) of P earlier
    positions every row may attend to, or None. Returns the new x and x's own (k, v)."""
    mha = blk.attn
    b, s, w = x.shape
    heads = mha.num_heads
    qkv = F.linear(blk.ln_1(x), mha.in_proj_weight, mha.in_proj_bias)  # (B, S, 3W), q|k|v packed
    q, k, v = qkv.view(b, s, 3, heads, w // heads).permute(2, 0, 3, 1, 4)  # each (B, H, S, d)
    if past is None:
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        p = past[0].shape[2]
        # (S, P + S): every prefix position, then causal within the suffix (True = attend)
        allow = torch.ones(s, p + s, dtype=torch.bool, device=x.device)
        allow[:, p:] = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
        a = F.scaled_dot_product_attention(q, torch.cat([past[0], k], 2), torch.cat([past[1], v], 2),
                                           attn_mask=allow)
    a = mha.out_proj(a.transpose(1, 2).reshape(b, s, w))
    x = x + blk.ls_1(a)
    x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    return x, (k, v)


def run_blocks(blocks, xp: Tensor, xs: Tensor, group: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """The blocks over G prefixes xp (G, P, W) and B suffixes xs (B, S, W); suffix row i continues
    prefix group[i] (group None: G == 1, every row). Returns the final (xp, xs)."""
    for blk in blocks:
        xp, (kp, vp) = _block(blk, xp, None)
        past = (kp.expand(len(xs), -1, -1, -1), vp.expand(len(xs), -1, -1, -1)) if group is None \
            else (kp[group], vp[group])
        xs, _ = _block(blk, xs, past)
    return xp, xs


def shared_prefix_forward(learner, p: int):
    """The learner's TextFeatures (as PromptLearner.forward) by the shared-prefix path; p from
    shared_prefix_len. G = distinct prefixes (1, or M for 'rolled'); S = L - p suffix positions."""
    from .base import TextFeatures

    enc = learner.encoder
    ctx = learner.context_vectors()  # (1, M, W): shared context (shuffled in training if asked)
    K, M = len(learner.class_names), learner.n_ctx
    base = learner.base_embeds if not learner.finetune else learner.embed_tokens(learner.ids)  # (K, L, W)
    L, W = base.shape[1:]
    rolled = learner.features == "rolled"
    contexts = (ctx[0, learner.roll_idx] if rolled else ctx).to(base.dtype)  # (G, M, W)
    G = contexts.shape[0]
    slots = learner.ctx_pos[0]  # (M,) context positions, all < p
    prefix = base[:1, :p].expand(G, p, W).scatter(1, slots[None, :, None].expand(G, M, W), contexts)

    cast = enc.transformer.get_cast_dtype()
    pos = enc.positional_embedding[:L].to(cast)
    xp = prefix.to(cast) + pos[:p]  # (G, p, W)
    xs = base[:, p:].to(cast) + pos[p:]  # (K, S, W)
    if G > 1:  # sequence i = k * G + g: class k with prefix g (the plain path's order)
        xs = xs[:, None].expand(K, G, L - p, W).reshape(K * G, L - p, W)
    group = torch.arange(K * G, device=xs.device) % G if G > 1 else None
    xp, xs = run_blocks(enc.transformer.resblocks, xp, xs, group)
    xs = enc.ln_final(xs)  # (K*G, S, W)
    eot = (learner.eot_pos - p).repeat_interleave(G)  # (K*G,) EOT index within the suffix
    if rolled:
        points = enc.project(xs[torch.arange(K * G, device=xs.device), eot]).view(K, M, -1)  # (K, M, D)
    elif learner.features == "eot":
        points = enc.project(xs[torch.arange(K, device=xs.device), eot])[:, None]  # (K, 1, D)
    else:  # per_token: outputs at the M context slots (shared) + the class name (mean over its tokens)
        at_ctx = enc.project(enc.ln_final(xp)[0, slots])  # (M, D)
        tokens = enc.project(xs)  # (K, S, D)
        name = torch.einsum("ks,ksd->kd", learner.name_weight[:, p:].to(tokens.dtype), tokens)  # (K, D)
        points = torch.cat([at_ctx.expand(K, M, -1), name[:, None]], dim=1)  # (K, M+1, D)
    return TextFeatures.of(points, learner.pooling)
