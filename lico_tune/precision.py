"""Autocast contexts for the precision options (text.precision, eval.precision).

'fp32' switches autocast off (also inside a bf16/fp16 training step), 'bf16'/'fp16' autocast to that
dtype, None leaves whatever autocast surrounds the call (e.g. train.precision) as it is.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device_type: str, precision: Optional[str]):
    """The autocast context of `precision` (None, 'fp32', 'bf16' or 'fp16') on this device type."""
    if precision is None:
        return contextlib.nullcontext()
    if precision == "fp32":
        return torch.autocast(device_type, enabled=False)
    if precision not in DTYPES:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got '{precision}'")
    return torch.autocast(device_type, dtype=DTYPES[precision])
