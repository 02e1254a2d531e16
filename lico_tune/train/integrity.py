"""Checksums that let lico-tune refuse damaged or replaced files before trusting them.

- Checkpoints: `tensor_digest` hashes every tensor of a checkpoint's state (key path, dtype,
  shape and bytes); `save_checkpoint` stores it under CHECKSUM_KEY and `load_checkpoint` compares,
  so a flipped byte inside a weight tensor is found (torch's zip reader does not check its CRCs).
- Weights: `nonfinite_tensors` lists the parameters and buffers that hold inf or nan.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

CHECKSUM_KEY = "tensor_checksum"


def tensor_digest(state: Any) -> str:
    """BLAKE2b over every tensor in a nested dict/list (sorted keys), CHECKSUM_KEY excluded."""
    h = hashlib.blake2b(digest_size=20)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, torch.Tensor):
            t = node.detach().cpu().contiguous().reshape(-1)
            h.update(f"{path}|{t.dtype}|{tuple(node.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(node, dict):
            for k in sorted(node, key=str):
                if k != CHECKSUM_KEY:
                    walk(node[k], f"{path}/{k}")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(state, "")
    return h.hexdigest()


def nonfinite_tensors(module: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers holding inf or nan."""
    return [name for name, t in module.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())]
