"""Checkpoint files: atomic writes, weights_only loads, and clear errors for damaged files."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from .layout import CHECKPOINT_FILE


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged, or does not fit the model."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write atomically: a crash mid-write never replaces the last good checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(
            f"No checkpoint at {path}. Pass the checkpoint file or the run directory that holds "
            f"{CHECKPOINT_FILE} (written by `lico-tune train` after each epoch).")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"Checkpoint {path} is damaged or not a lico-tune checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). It may have been cut off "
            f"by a crash or a full disk: delete it and resume from an earlier copy, or train again."
        ) from None


def trainable_state(model: nn.Module) -> dict:
    """The model's state without frozen parameters (a frozen text encoder is rebuilt from its
    weights, so saving it every epoch would only cost disk)."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def load_trainable_state(model: nn.Module, state: dict, source: str = "checkpoint") -> None:
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in frozen]
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}. "
            f"Was it written for another spec (backbone, text encoder, n_ctx)? Use the spec saved "
            f"in the checkpoint.")
