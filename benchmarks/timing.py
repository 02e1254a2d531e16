"""Timing helpers shared by the benchmarks: wall time on a CPU, CUDA events after a synchronise
on a GPU (the host does not wait inside the timed region), and the machine's load average."""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch

from lean import load_lean


def load_average() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average n/a"


def resolve_device(name: str) -> torch.device:
    """lico-tune's own device rule (lico_tune/compute.py imports torch only); its error as an exit."""
    device = load_lean("device")
    try:
        return device.pick_device(name, "--device")
    except device.TrialConfigError as exc:
        raise SystemExit(str(exc)) from None


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    import platform
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of fn takes: CUDA events on a GPU (synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_seconds(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                   warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each fn; rounds interleave the fns so that machine noise hits
    them alike; `warmup` untimed calls of each first."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(seconds(fn, device))
    return {k: statistics.median(v) for k, v in times.items()}
