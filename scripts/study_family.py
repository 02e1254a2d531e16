"""The language study's confirmatory family (docs/study/language/publish.sh; declared in
search_spaces/study_language.yaml's header before any result): six paired contrasts across its two
experiments, Holm over the six (paired t and TOST alike), each verdict also required to hold under
the seeds x test-images interval where the trials kept their per-image correctness. Reads only;
prints a Markdown section.

    python scripts/study_family.py docs/study/language/results study-language_<stamp> study-language-placed_<stamp>
"""
from __future__ import annotations

import argparse
import math
import sys

from statsmodels.stats.multitest import multipletests

from lico_tune.results import load_results
from lico_tune.results.report import experiment_report
from lico_tune.results.report_text import num, p_text

LEVEL = 0.95
# (label, part, metric, arm, baseline, TOST margin): the declaration, unchanged since it was made.
FAMILY = [
    ("C1", "A", "test/acc", "mm", "ce", 0.5),
    ("C2", "A", "test/acc", "mm", "mm_deranged", 0.5),
    ("C3", "A", "test/acc", "mm", "ce_smooth", 0.5),
    ("C4", "A", "test/acc", "mm_l100", "ce_l100", 1.0),
    ("C5", "A", "test/acc", "mm_l100", "mm_deranged_l100", 1.0),
    ("C6", "B", "saliency/gradcam/pointing_mask", "lico_alive", "ce", 0.05),
]


def contrast(res, experiment: str, metric: str, arm: str, baseline: str, margin: float):
    rep = experiment_report(res, experiment, metrics=[metric], baseline=[baseline], level=LEVEL,
                            margins={metric: margin}, only_arms=[arm])
    rows = rep.paired[(rep.paired["arm"] == arm) & (rep.paired["baseline"] == baseline)]
    return rep, (rows.iloc[0].to_dict() if len(rows) else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("part_a")
    ap.add_argument("part_b", nargs="?")
    args = ap.parse_args(argv)
    res = load_results(args.root, use_catalog=False)
    experiments = {"A": args.part_a, "B": args.part_b}
    found = []
    for label, part, metric, arm, baseline, margin in FAMILY:
        rep = row = None
        if experiments[part]:
            rep, row = contrast(res, experiments[part], metric, arm, baseline, margin)
        found.append((label, part, metric, arm, baseline, margin, rep, row))
    tested = [f for f in found if f[-1] is not None and not math.isnan(f[-1]["p_t"])]
    if tested:  # Holm over the contrasts that could be tested (all six once both parts have finished)
        p_adj = multipletests([f[-1]["p_t"] for f in tested], method="holm")[1]
        tost = [f[-1]["p_tost"] for f in tested]
        tost_adj = multipletests([1.0 if math.isnan(p) else p for p in tost], method="holm")[1]
        for f, p, q in zip(tested, p_adj, tost_adj):
            f[-1]["p_adj"], f[-1]["p_tost_adj"] = float(p), float(q)
    print(f"## Confirmatory family (declared; Holm over the {len(FAMILY)} contrasts, {len(tested)} tested)\n")
    print("| contrast | part | metric | comparison | n | mean diff | 95% CI (seeds) | 95% CI (seeds × images) "
          "| p (paired t) | p (Holm) | p (TOST, Holm) | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, part, metric, arm, baseline, margin, rep, r in found:
        if r is None:
            print(f"| {label} | {part} | {metric} | {arm} − {baseline} | 0 | – | – | – | – | – | – | not run yet |")
            continue
        d = 2 if metric.startswith("test/") else 3
        images = ("–" if math.isnan(r.get("ci_low_images", math.nan)) else
                  f"[{num(r['ci_low_images'], d)}, {num(r['ci_high_images'], d)}]")
        print(f"| {label} | {part} | {metric} | {arm} − {baseline} | {int(r['n'])} | {num(r['mean_diff'], d, sign=True)} "
              f"| [{num(r['ci_low'], d)}, {num(r['ci_high'], d)}] | {images} | {p_text(r['p_t'])} "
              f"| {p_text(r.get('p_adj', math.nan))} | {p_text(r.get('p_tost_adj', math.nan))} (±{margin:g}) "
              f"| {rep.verdict(r)} |")
    print(f"\nVerdicts at α = {1 - LEVEL:.2g} after Holm over the family: higher/lower (paired t), equivalent "
          f"(TOST within the stated margin), else inconclusive; for accuracy a verdict must also hold under "
          f"the interval over seeds and test images (marked '(seeds × images)'), else it reads "
          f"'inconclusive at the test set's resolution'.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
