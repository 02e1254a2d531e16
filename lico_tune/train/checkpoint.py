"""Checkpoint files: atomic writes, weights_only loads, and clear errors for damaged files."""
from __future__ import annotations

import errno
import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import BadInput
from .integrity import CHECKSUM_KEY, tensor_digest
from ..layout import CHECKPOINT_FILE
from ..storage.userpaths import disk_full


class CheckpointError(BadInput, RuntimeError):
    """A checkpoint that is missing, damaged, or does not fit the model."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write atomically: a crash mid-write never replaces the last good checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {**state, CHECKSUM_KEY: tensor_digest(state)}     # verified by load_checkpoint
    try:
        torch.save(state, tmp)
    except RuntimeError as exc:      # torch says "unexpected pos ..." where the disk filled up
        full = disk_full(str(path.parent))          # measured before the partial file is removed
        tmp.unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise
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
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError,
            IndexError, KeyError, TypeError, AttributeError) as exc:
        raise _damaged(path, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}") from None
    _check_state(state, path)
    return state


def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {path} is damaged or not a lico-tune checkpoint ({why}). It may have been cut off "
        f"by a crash or a full disk, or replaced: delete it and resume from an earlier copy, or train again.")


def _check_state(state, path: Path) -> None:
    """A lico-tune checkpoint is a dict with the model's tensors and a valid trial config, whose
    tensors still match the checksum written with them (checkpoints older than the checksum pass)."""
    from pydantic import ValidationError

    from ..errors import first_error
    from ..spec import TrialConfig, saved_trial
    if not isinstance(state, dict):
        raise _damaged(path, f"it holds a {type(state).__name__}, not a dict of model state and config")
    missing = [k for k in ("model", "config", "epoch") if k not in state]
    if missing:
        raise _damaged(path, f"it has no {', '.join(missing)}")
    if not isinstance(state["model"], dict) or not isinstance(state["config"], dict):
        raise _damaged(path, "its model or config entry is not a mapping")
    try:
        TrialConfig.model_validate(saved_trial(state["config"]))
    except ValidationError as exc:
        raise _damaged(path, f"its saved config is not valid: {first_error(exc, TrialConfig)}") from None
    recorded = state.get(CHECKSUM_KEY)
    if recorded is not None and recorded != tensor_digest(state):
        raise _damaged(path, "its tensors do not match the checksum written with them: a changed byte")


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
