"""Per-step training cost of each arm of a spec, measured with the real trial code (lico_tune.train):
each arm's resolved config trains `--steps` optimiser steps of its own batch size on one thread; the
seconds per step exclude the first `--warmup` steps. Prints the load average before and after.

    python scripts/step_costs.py search_spaces/study_converged.yaml --steps 40
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lico_tune.spec import load_spec, set_path, validate_trial  # noqa: E402
from lico_tune.train import train_trial  # noqa: E402


def arm_config(spec, arm: str, steps: int):
    tree = spec.base.model_dump()
    for path, value in (spec.ablation or {}).get(arm, {}).items():
        set_path(tree, path, value)
    for path, value in {"train.epochs": 1, "train.steps_per_epoch": steps, "train.log_every": 10 ** 6,
                        "train.threads": 1, "data.test_subset": 200, "eval.n_images": 0,
                        "eval.gallery_images": 0, "eval.ses": False}.items():
        set_path(tree, path, value)
    return validate_trial(tree)


def seconds_per_step(cfg, warmup: int) -> float:
    marks: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        train_trial(cfg, out, progress=lambda step, total: marks.append(time.perf_counter()))
    timed = marks[warmup:]
    return (timed[-1] - timed[0]) / max(1, len(timed) - 1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--arm", action="append", help="only these arms (repeatable)")
    args = ap.parse_args(argv)
    spec = load_spec(args.spec)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for arm in args.arm or list(spec.ablation or {}):
        cfg = arm_config(spec, arm, args.steps)
        print(f"{arm:18s} {seconds_per_step(cfg, args.warmup):.3f} s/step (batch {cfg.train.batch_size}, "
              f"{cfg.data.name})", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
