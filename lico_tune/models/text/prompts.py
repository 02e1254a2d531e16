"""CoOp prompt layouts: where the context vectors, the class name and the special tokens sit.

A prompt is "X X ... X {class name}." with M context slots X. Layouts (CoOp's):
  end     [SOS] X*M name . [EOS]
  middle  [SOS] X*(M//2) name X*(M-M//2) . [EOS]
  front   [SOS] name X*M . [EOS]
Sequences are padded only to the longest prompt of the K classes (or to `pad_to`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PromptLayout:
    ids: Tensor        # (K, L) token ids; context slots hold `placeholder`, padding holds `pad_id`
    lengths: Tensor    # (K,) real tokens per prompt, specials included
    ctx_pos: Tensor    # (K, M) position of context slot m in prompt k
    name_weight: Tensor  # (K, L) 1/n_k at the n_k class-name positions, 0 elsewhere
    eot_pos: Tensor    # (K,) position of the closing special token ([EOS]/[SEP])

    @property
    def seq_len(self) -> int:
        return self.ids.shape[1]

    def attention_mask(self) -> Tensor:
        """(K, L) 1 on real tokens, 0 on padding."""
        return (torch.arange(self.seq_len)[None] < self.lengths[:, None]).long()


def build_layout(names_ids: list[list[int]], n_ctx: int, position: str, prefix: list[int],
                 period: list[int], suffix: list[int], placeholder: int, pad_id: int,
                 max_length: int, class_names: list[str], pad_to: int | None = None) -> PromptLayout:
    """Token layout of the K prompts. names_ids[k] are the tokens of class k's name (no specials)."""
    if position not in ("end", "middle", "front"):
        raise ValueError(f"class_token_position must be end, middle or front, got '{position}'")
    seqs, ctx_pos, name_pos = [], [], []
    half = n_ctx // 2
    for name in names_ids:
        if not name:
            raise ValueError("a class name tokenised to nothing; class names must contain a word")
        if position == "end":
            parts = [("ctx", n_ctx), ("name", name)]
        elif position == "middle":
            parts = [("ctx", half), ("name", name), ("ctx", n_ctx - half)]
        else:
            parts = [("name", name), ("ctx", n_ctx)]
        seq, cpos, npos = list(prefix), [], []
        for kind, what in parts:
            if kind == "ctx":
                cpos += range(len(seq), len(seq) + what)
                seq += [placeholder] * what
            else:
                npos += range(len(seq), len(seq) + len(what))
                seq += what
        seq += period + suffix
        seqs.append(seq)
        ctx_pos.append(cpos)
        name_pos.append(npos)

    lengths = [len(s) for s in seqs]
    longest = max(range(len(seqs)), key=lambda k: lengths[k])
    if lengths[longest] > max_length:
        raise ValueError(
            f"the prompt of class '{class_names[longest]}' has {lengths[longest]} tokens with n_ctx={n_ctx}, "
            f"over the limit of {max_length}; use fewer context vectors or a shorter class name")
    L = max(lengths) if pad_to is None else max(pad_to, max(lengths))
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    name_weight = torch.zeros(len(seqs), L)
    for k, seq in enumerate(seqs):
        ids[k, :len(seq)] = torch.tensor(seq)
        name_weight[k, name_pos[k]] = 1.0 / len(name_pos[k])
    lengths_t = torch.tensor(lengths)
    return PromptLayout(ids=ids, lengths=lengths_t, ctx_pos=torch.tensor(ctx_pos, dtype=torch.long),
                        name_weight=name_weight, eot_pos=lengths_t - len(suffix))
