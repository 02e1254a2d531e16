"""The compute context of a trial: which device, which autocast precision, and the switches that make
a CPU trial rerun bit for bit. Imports only torch (and the error base): benchmarks/all.py uses it
on a machine that has nothing else of the project.

Determinism. With `train.deterministic` (default: on for CPU trials, off on CUDA where some kernels
have no deterministic version and would raise), a trial runs with
* a fixed number of intra-op CPU threads, `train.threads` (default 1 when deterministic): a
  reduction split over more threads sums in an order that depends on scheduling. Measured on
  Fashion-MNIST (tiny CNN + MiniLM, batch 256, 8 steps), two runs of one seed: 2 threads without
  deterministic algorithms gave 23 of 26 checkpoint tensors different; 1 thread, or 2 threads
  with deterministic algorithms on, gave all 26 identical. 1 is the default because it does not
  rest on every CPU kernel honouring the deterministic flag; `threads: N` with deterministic on
  is faster and was bit-identical in that measurement (a rerun uses the same recorded N);
* `torch.use_deterministic_algorithms(True)`, cuDNN benchmark off and cuDNN deterministic, and
  on CUDA `CUBLAS_WORKSPACE_CONFIG=:4096:8` (cuBLAS needs it for reproducible GEMMs);
* seeded generators: the trainer seeds torch from `train.seed`; batches are drawn by
  `data.loader.iterate_batches` from a generator seeded with (seed, epoch), in the main process.
`configure_determinism` returns the flags it set; `determinism_state()` reads them back from torch
(provenance records that, so a trial's record says what actually ran).

Precision. 'fp32' switches autocast off (also inside a bf16/fp16 training step), 'bf16'/'fp16'
autocast to that dtype, None leaves whatever autocast surrounds the call (e.g. train.precision).
"""
from __future__ import annotations

import contextlib
import os
from typing import Optional

import torch

from .errors import TrialConfigError

CUBLAS_WORKSPACE = ":4096:8"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str, setting: str = "train.device") -> torch.device:
    """The torch device of a device setting ('auto', 'cpu', 'cuda', 'cuda:1'). `setting` is where
    the user gave `name` (train.device, --device): the error names it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrialConfigError(f"{setting} is '{name}' but no CUDA device is available; use 'auto' or 'cpu'.")
    return device


def autocast(device_type: str, precision: Optional[str]):
    """The autocast context of `precision` (None, 'fp32', 'bf16' or 'fp16') on this device type."""
    if precision is None:
        return contextlib.nullcontext()
    if precision == "fp32":
        return torch.autocast(device_type, enabled=False)
    if precision not in DTYPES:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got '{precision}'")
    return torch.autocast(device_type, dtype=DTYPES[precision])


def resolve_determinism(deterministic: Optional[bool], threads: Optional[int],
                        device: torch.device) -> tuple[bool, Optional[int]]:
    """(deterministic, threads) after the defaults: deterministic on for the CPU, and 1 thread
    when deterministic and none was asked for."""
    det = (device.type == "cpu") if deterministic is None else bool(deterministic)
    if threads is None and det:
        threads = 1
    return det, threads


def configure_determinism(train_cfg, device: torch.device) -> dict:
    """Set threads and deterministic algorithms for a trial with `train_cfg` (spec.TrainConfig)
    on `device`; returns `determinism_state()`."""
    det, threads = resolve_determinism(getattr(train_cfg, "deterministic", None), train_cfg.threads, device)
    if threads:
        torch.set_num_threads(threads)
    if det and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(det)
    torch.backends.cudnn.benchmark = False if det else torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic = det
    return determinism_state()


def determinism_state() -> dict:
    """The determinism-relevant settings of this process, as they are now."""
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
