"""Side-by-side timing of the batched OT loss: lico_tune's sinkhorn_log vs POT's solve_batch vs a
per-sample ot.sinkhorn loop, forward + backward of the loss, in one run (ratios are only meaningful
within a run). Median of --repeats after --warmup calls. Also reports Sinkhorn convergence.

    python benchmarks/ot_solvers.py                 # the realistic shapes (~40-60 s on 2 CPU cores)
    python benchmarks/ot_solvers.py --smoke-test    # tiny, a few seconds
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

# Drop this folder from the path (run as a script, it comes first) so that nothing here can shadow
# POT's `ot` package (this file did under its old name), and import lico_tune from the checkout above it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
from lico_tune.losses import _sinkhorn_log, _sq_dists, ot_loss  # noqa: E402


def make_inputs(B, N, M, D, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, D, generator=g).to(device).requires_grad_(True)
    y = torch.randn(B, M, D, generator=g).to(device).requires_grad_(True)
    return x, y


def cost_of(x, y):
    return _sq_dists(F.normalize(x, dim=-1), F.normalize(y, dim=-1))  # (B, N, M)


def loss_ours(x, y, eps, max_iter, tol):
    return ot_loss(x, y, epsilon=eps, max_iter=max_iter, tol=tol, gradient="envelope", solver="native")


def loss_pot_batch(x, y, eps, max_iter, tol):
    from ot.batch import solve_batch
    C = cost_of(x, y)
    res = solve_batch(C, reg=eps, max_iter=max_iter, tol=tol, method="log_sinkhorn", grad="envelope")
    return res.value_linear.mean()


def loss_pot_batch_detach(x, y, eps, max_iter, tol):
    """POT solve_batch on a detached cost (no autograd recording in its loop), loss built by us."""
    from ot.batch import solve_batch
    C = cost_of(x, y)
    res = solve_batch(C.detach(), reg=eps, max_iter=max_iter, tol=tol, method="log_sinkhorn", grad="detach")
    return (res.plan * C).sum((1, 2)).mean()


def loss_pot_loop(x, y, eps, max_iter, tol):
    import ot
    C = cost_of(x, y)
    B, N, M = C.shape
    a = torch.full((N,), 1.0 / N, dtype=C.dtype, device=C.device)
    b = torch.full((M,), 1.0 / M, dtype=C.dtype, device=C.device)
    plans = [ot.sinkhorn(a, b, C[i].detach(), reg=eps, method="sinkhorn_log", numItermax=max_iter,
                         stopThr=tol) for i in range(B)]
    return (torch.stack(plans) * C).sum((1, 2)).mean()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fb(fn, x, y, eps, max_iter, tol, warmup, repeats, device):
    times = []
    for i in range(warmup + repeats):
        x.grad = y.grad = None
        sync(device)
        t0 = time.perf_counter()
        fn(x, y, eps, max_iter, tol).backward()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke-test", action="store_true", help="tiny shapes, 1 repeat, a few seconds")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="warm-up calls per method and shape (first eps)")
    p.add_argument("--loop-small-eps", action="store_true",
                   help="also time the per-sample ot.sinkhorn loop at small eps (slow: ~3 s a call)")
    p.add_argument("--pot-detach", action="store_true",
                   help="also time POT solve_batch on a detached cost (grad='detach'), loss built outside")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: torch's default). Default 1: on a shared 2-core machine, "
                        "multi-threaded small ops measured 10-100x slower from contention, drowning the ratios")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sinkhorn did not converge")

    import ot
    # (name, N, D): the 128 channels of a WRN-28-2 last block as points in R^(8*8), or its 8x8
    # positions as points in R^128; M = 12 prompt features (13 with the class token).
    shapes = [("channels", 128, 64), ("spatial", 64, 128)]
    Ms, epss = [12, 13], [0.1, 1e-4]
    B, repeats, warmup = args.batch, args.repeats, args.warmup
    if args.smoke_test:
        shapes, Ms, epss, B, repeats, warmup = [("tiny", 8, 6)], [3], [0.1, 1e-4], 4, 1, 1
    methods = [("ours", loss_ours), ("pot_batch", loss_pot_batch)]
    if args.pot_detach:
        methods.append(("pot_batch_detach", loss_pot_batch_detach))
    methods.append(("pot_loop", loss_pot_loop))

    print(f"torch {torch.__version__}, POT {ot.__version__}, {platform.machine()}, device {device}, "
          f"threads {torch.get_num_threads()}, float32, B={B}, max_iter={args.max_iter}, tol={args.tol}; "
          f"ms per forward+backward, median of {repeats} (warm-up excluded)")
    print(f"{'points':>9} {'N':>4} {'M':>3} {'eps':>7} {'iters':>5} {'row err':>8} | "
          + " ".join(f"{n:>16}" for n, _ in methods) + " | time / ours")
    for name, N, D in shapes:
        for M in Ms:
            for k, eps in enumerate(epss):
                x, y = make_inputs(B, N, M, D, device)
                with torch.no_grad():
                    plan, iters, _ = _sinkhorn_log(cost_of(x, y), eps, args.max_iter, args.tol)
                    err = (plan.sum(2) - 1.0 / N).abs().sum(1).max().item()
                ms = []
                for mname, fn in methods:
                    if mname == "pot_loop" and eps < 0.01 and not (args.loop_small_eps or args.smoke_test):
                        ms.append(float("nan"))
                        continue
                    ms.append(time_fb(fn, x, y, eps, args.max_iter, args.tol, warmup if k == 0 else 0,
                                      repeats, device))
                print(f"{name:>9} {N:>4} {M:>3} {eps:>7.0e} {iters:>5} {err:>8.1e} | "
                      + " ".join(f"{t:>16.1f}" for t in ms) + " | "
                      + " ".join(f"{t / ms[0]:.2f}" for t in ms[1:]))
    if not args.smoke_test:
        # Small eps converges slowly: row-marginal L1 error (total mass 1) after each budget.
        x, y = make_inputs(B, 128, 12, 64, device)
        C = cost_of(x, y).detach()
        for budget in (100, 1000):
            t0 = time.perf_counter()
            plan, iters, _ = _sinkhorn_log(C, 1e-4, budget, args.tol)
            dt = time.perf_counter() - t0
            err = (plan.sum(2) - 1.0 / 128).abs().sum(1).max().item()
            print(f"eps 1e-4, channels 128x12, max_iter {budget:>5}: {iters:>5} iterations, {dt * 1e3:5.0f} ms, "
                  f"max row L1 error {err:.2f}, plan finite: {bool(torch.isfinite(plan).all())}")


if __name__ == "__main__":
    main()
