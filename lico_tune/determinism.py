"""Bit-identical reruns: what a trial switches on before it builds anything.

With `train.deterministic` (default: on for CPU trials, off on CUDA where some kernels have no
deterministic version and would raise), a trial runs with
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

`configure` returns the flags it set; `state()` reads them back from torch (provenance records
that, so a trial's record says what actually ran)."""
from __future__ import annotations

import os
from typing import Optional

import torch

CUBLAS_WORKSPACE = ":4096:8"


def resolve(deterministic: Optional[bool], threads: Optional[int], device: torch.device) -> tuple[bool, Optional[int]]:
    """(deterministic, threads) after the defaults: deterministic on for the CPU, and 1 thread
    when deterministic and none was asked for."""
    det = (device.type == "cpu") if deterministic is None else bool(deterministic)
    if threads is None and det:
        threads = 1
    return det, threads


def configure(train_cfg, device: torch.device) -> dict:
    """Set threads and deterministic algorithms for a trial with `train_cfg` (spec.TrainConfig)
    on `device`; returns `state()`."""
    det, threads = resolve(getattr(train_cfg, "deterministic", None), train_cfg.threads, device)
    if threads:
        torch.set_num_threads(threads)
    if det and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(det)
    torch.backends.cudnn.benchmark = False if det else torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic = det
    return state()


def state() -> dict:
    """The determinism-relevant settings of this process, as they are now."""
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
