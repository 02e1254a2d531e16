"""Checksums that let lico-tune refuse damaged or replaced files before trusting them.

- Checkpoints: `tensor_digest` hashes every tensor of a checkpoint's state (key path, dtype,
  shape and bytes); `save_checkpoint` stores it under CHECKSUM_KEY and `load_checkpoint` compares,
  so a flipped byte inside a weight tensor is found (torch's zip reader does not check its CRCs).
- Experiments: `record_manifest` writes the SHA-256 of Ray's pickled Tuner (TUNER_FILE) and of
  the plan (RUN_FILE) into MANIFEST_FILE when `run` creates them; `verify_manifest` checks them
  before `resume` lets Ray unpickle tuner.pkl (unpickling runs code: a replaced file would too).
- Weights: `nonfinite_tensors` lists the parameters and buffers that hold inf or nan.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

import torch
from torch import nn

from .errors import SpecError
from .layout import MANIFEST_FILE, RUN_FILE, TUNER_FILE
from .storage import join, read_text, write_text

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


# ----------------------------------------------------------------------------- experiment files

def _sha256(data: Optional[bytes]) -> Optional[str]:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _read_bytes(path: str) -> Optional[bytes]:
    import pyarrow.fs as pafs
    from .storage import is_uri
    if not is_uri(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
    fs, p = pafs.FileSystem.from_uri(path)
    try:
        with fs.open_input_file(p) as f:
            return f.readall()
    except (FileNotFoundError, OSError):
        return None


def record_manifest(experiment_dir: str) -> dict:
    """Write MANIFEST_FILE: the SHA-256 of the run file and of Ray's tuner.pkl as they are now."""
    sums = {name: _sha256(_read_bytes(join(experiment_dir, name))) for name in (RUN_FILE, TUNER_FILE)}
    write_text(join(experiment_dir, MANIFEST_FILE), json.dumps({"sha256": sums}, indent=2) + "\n")
    return sums


def verify_manifest(experiment_dir: str) -> None:
    """Refuse (SpecError) an experiment whose run file or tuner.pkl changed since `run` wrote them."""
    text = read_text(join(experiment_dir, MANIFEST_FILE))
    where = join(experiment_dir, MANIFEST_FILE)
    if text is None:
        raise SpecError(f"{experiment_dir} has no {MANIFEST_FILE} (the checksums of {RUN_FILE} and {TUNER_FILE} "
                        f"that `lico-tune run` records), so lico-tune cannot tell whether {TUNER_FILE} is the one "
                        f"Ray wrote; resume unpickles it, which runs code. Start the experiment again with "
                        f"`lico-tune run`, or, if you trust the directory, record the checksums with "
                        f"`python -c \"from lico_tune.integrity import record_manifest as r; r('{experiment_dir}')\"`.")
    try:
        recorded = json.loads(text)["sha256"]
        assert isinstance(recorded, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise SpecError(f"{where} is damaged (not the JSON lico-tune writes); resume refuses to unpickle "
                        f"{TUNER_FILE} without it. Start the experiment again with `lico-tune run`.") from None
    for name in (RUN_FILE, TUNER_FILE):
        now = _sha256(_read_bytes(join(experiment_dir, name)))
        if recorded.get(name) is not None and now != recorded.get(name):
            raise SpecError(f"{join(experiment_dir, name)} changed since `lico-tune run` wrote it (its SHA-256 "
                            f"differs from the one in {MANIFEST_FILE}); resume refuses to load it, because "
                            f"unpickling a replaced {TUNER_FILE} would run its code. Restore the original file "
                            f"or start the experiment again with `lico-tune run`.")
