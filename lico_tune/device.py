"""The torch device a device setting names ('auto', 'cpu', 'cuda', 'cuda:1'). Imports torch only:
benchmarks/all.py uses it on a machine that has nothing else of the project."""
from __future__ import annotations

import torch

from .errors import BadInput


class TrialConfigError(BadInput, ValueError):
    """A trial setting this machine cannot run (no CUDA, fp16 on the CPU)."""


def pick_device(name: str, setting: str = "train.device") -> torch.device:
    """`setting` is where the user gave `name` (train.device, --device): the error names it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrialConfigError(f"{setting} is '{name}' but no CUDA device is available; use 'auto' or 'cpu'.")
    return device
