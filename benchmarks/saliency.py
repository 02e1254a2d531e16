"""Batched insertion/deletion vs the per-image, per-step reference loop, in one run.

For each model it times lico_tune.saliency.insertion_deletion (all images x modes x steps through
the model in flat batches of --batch-size) on a few images, and insertion_deletion_reference (one
image per forward, RISE's CausalMetric loop) on fewer (2 rounds; on a CPU 4 batched + 1 reference
image per round at 32 px, 2 + 1 at 224 px; on CUDA 64 + 1 and 16 + 1), and prints both per-image
rates, their ratio, and the largest |AUC difference| over the images both saw. Saliency maps are random
(seeded): the cost does not depend on them. Models have random weights, eval mode, fp32.

  wrn28_2   32 px, 10 classes, 10 pixels per step (103 steps)
  resnet50  224 px, 1000 classes (torchvision, weights=None), 224*8 pixels per step (28 steps)

Rounds interleave the two paths so that machine noise hits both alike. Warm-up forwards at both
batch shapes are excluded from the timings. `--device` picks CUDA when available. `--smoke-test`
runs a tiny version in seconds.

Measured here (2 shared CPU cores, AMD EPYC, torch 2.14.1, other jobs running, so noisy):
default threads (2) under heavy load: wrn28_2 13.7x, resnet50 4.1x; --threads 1: 1.2x and 0.8x.
On a CPU both paths are compute-bound; the >= 20x target needs a GPU (not measured here).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

from lico_tune.saliency import insertion_deletion, insertion_deletion_reference


def build(backbone: str, num_classes: int) -> tuple[nn.Module, str]:
    try:
        try:
            from lico_tune.models import build_classifier
        except ImportError:
            from lico_tune.models.backbones import build_classifier
        from lico_tune.spec import ModelConfig
        return build_classifier(ModelConfig(backbone=backbone), num_classes, 3), f"lico_tune {backbone}"
    except Exception as e:  # noqa: BLE001 - the models package is written in parallel
        if backbone == "resnet50":
            from torchvision.models import resnet50
            return resnet50(weights=None, num_classes=num_classes), "torchvision resnet50 (fallback)"
        body = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 128, 3, 2, 1), nn.ReLU(),
                             nn.Conv2d(128, 128, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return nn.Sequential(body, nn.Linear(128, num_classes)), f"small stand-in CNN ({e!r})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, backbone: str, size: int, num_classes: int, pps: int, n_batched: int, n_ref: int,
          batch_size: int, rounds: int, device: torch.device) -> float:
    """Each round times the batched path on n_batched new images, then the reference loop on n_ref
    of them (rounds interleave the two, so machine noise hits both alike); rates are totals."""
    torch.manual_seed(0)
    model, what = build(backbone, num_classes)
    model.eval().to(device)
    g = torch.Generator().manual_seed(0)
    n = n_batched * rounds
    x = torch.randn(n, 3, size, size, generator=g).to(device)
    sal = torch.rand(n, size, size, generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    with torch.no_grad():  # warm-up at both shapes
        model(x[:1])
        model(torch.randn(batch_size, 3, size, size, device=device))
    _sync(device)
    t_fast = t_ref = diff = 0.0
    for r in range(rounds):
        sl = slice(r * n_batched, (r + 1) * n_batched)
        t0 = time.perf_counter()
        fast = insertion_deletion(model, x[sl], sal[sl], y[sl], pixels_per_step=pps, batch_size=batch_size)
        _sync(device)
        t_fast += time.perf_counter() - t0
        rs = slice(r * n_batched, r * n_batched + n_ref)
        t0 = time.perf_counter()
        ref = insertion_deletion_reference(model, x[rs], sal[rs], y[rs], pixels_per_step=pps)
        _sync(device)
        t_ref += time.perf_counter() - t0
        diff = max([diff] + [(fast[k][:n_ref] - ref[k]).abs().max().item()
                             for k in ("insertion", "deletion", "insertion_curve", "deletion_curve")])
    rate_fast, rate_ref = n / t_fast, n_ref * rounds / t_ref
    fwd = n * 2 * (fast["n_steps"] + 1)
    print(f"{name}: {what}, {size} px, {fast['n_steps']} steps of {pps} px, batch {batch_size}, {rounds} rounds")
    print(f"  batched   {n:3d} images in {t_fast:7.2f} s = {rate_fast:8.3f} images/s "
          f"({fwd / t_fast:.0f} forwards/s)")
    print(f"  reference {n_ref * rounds:3d} images in {t_ref:7.2f} s = {rate_ref:8.3f} images/s")
    print(f"  ratio (batched / reference, per image): {rate_fast / rate_ref:.1f}x;  "
          f"max |AUC or curve diff| {diff:.2e}", flush=True)
    return rate_fast / rate_ref


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke-test", action="store_true", help="tiny sizes, seconds")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda[:N]")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}")
    if args.smoke_test:
        bench("wrn28_2", "wrn28_2", 16, 10, 10, 2, 1, args.batch_size or 64, rounds=1, device=device)
        return
    big = device.type == "cuda"  # more images where they are cheap
    r1 = bench("wrn28_2", "wrn28_2", 32, 10, 10, 64 if big else 4, 1, args.batch_size or 256, 2, device)
    r2 = bench("resnet50", "resnet50", 224, 1000, 224 * 8, 16 if big else 2, 1, args.batch_size or (128 if big else 32),
               2, device)
    print(f"ratios: wrn28_2 {r1:.1f}x, resnet50 {r2:.1f}x (target >= 20x)")
    if device.type == "cpu":
        print("note: on a CPU both paths are compute-bound, so batching buys little; the >= 20x target is a GPU\n"
              "one, where one-image forwards are bound by kernel launches.")


if __name__ == "__main__":
    main()
