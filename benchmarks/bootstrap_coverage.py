"""Coverage of nominal 95% intervals of a mean at small n: Student t, percentile bootstrap and BCa
bootstrap (scipy.stats.bootstrap), over many simulated samples per n. This is what justifies
`lico_tune.results.stats.BOOTSTRAP_MIN_N` (the report refuses the bootstrap below it and uses
the t interval instead). Coverage is a property of the method, not of the machine: load does not
change the numbers, only the time (the samples are seeded).

Distributions: normal (seed-to-seed accuracy is close to it), and a skewed one (lognormal,
sigma 0.5: a metric with a floor, e.g. a loss or a deletion AUC near 0).

    python benchmarks/bootstrap_coverage.py                  # 2000 samples per cell (~1-2 min)
    python benchmarks/bootstrap_coverage.py --reps 200       # quick look
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
from scipy import stats as sps

NS = (2, 3, 4, 5, 6, 8, 10, 15, 20, 30)
DISTS = {
    "normal": (lambda rng, shape: rng.normal(0.0, 1.0, shape), 0.0),
    "lognormal": (lambda rng, shape: rng.lognormal(0.0, 0.5, shape), float(np.exp(0.125))),
}


def t_covers(x: np.ndarray, true: float, level: float) -> np.ndarray:
    n = x.shape[-1]
    half = sps.t.ppf(1 - (1 - level) / 2, n - 1) * x.std(axis=-1, ddof=1) / np.sqrt(n)
    m = x.mean(axis=-1)
    return (m - half <= true) & (true <= m + half)


def boot_covers(x: np.ndarray, true: float, level: float, method: str, n_resamples: int, seed: int) -> np.ndarray:
    """Coverage of scipy's bootstrap interval, all samples in one vectorised call (axis=-1)."""
    res = sps.bootstrap((x,), np.mean, axis=-1, confidence_level=level, method=method,
                        n_resamples=n_resamples, rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    # A degenerate resample distribution gives NaN: it covers nothing.
    return (np.where(np.isnan(lo), np.inf, lo) <= true) & (true <= np.where(np.isnan(hi), -np.inf, hi))


def table(reps: int, n_resamples: int, level: float = 0.95, seed: int = 0) -> list[dict]:
    rows = []
    for dist, (draw, true) in DISTS.items():
        for n in NS:
            rng = np.random.default_rng([seed, n, len(dist)])
            x = draw(rng, (reps, n))
            with warnings.catch_warnings():   # n = 2: BCa's jackknife is degenerate for some samples
                warnings.simplefilter("ignore")
                row = {"dist": dist, "n": n, "t": t_covers(x, true, level).mean(),
                       "percentile": boot_covers(x, true, level, "percentile", n_resamples, seed).mean(),
                       "BCa": boot_covers(x, true, level, "BCa", n_resamples, seed).mean()}
            rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=2000, help="simulated samples per (distribution, n)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval")
    p.add_argument("--level", type=float, default=0.95)
    args = p.parse_args()
    rows = table(args.reps, args.resamples, args.level)
    print(f"Coverage of nominal {args.level:.0%} intervals of the mean ({args.reps} samples per row, "
          f"{args.resamples} resamples; Monte Carlo s.e. about "
          f"{100 * np.sqrt(args.level * (1 - args.level) / args.reps):.1f} points)\n")
    print("| distribution | n | t | percentile bootstrap | BCa bootstrap |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dist']} | {r['n']} | {100 * r['t']:.1f}% | {100 * r['percentile']:.1f}% | {100 * r['BCa']:.1f}% |")


if __name__ == "__main__":
    main()
