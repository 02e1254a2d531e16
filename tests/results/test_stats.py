"""Statistics that hold at small n, checked against scipy and statsmodels on a fixed table: t and
paired t, Holm and Benjamini-Hochberg over the whole report's family, TOST, the minimal detectable
effect, seeds for a target half-width, the BCa bootstrap and its coverage guard, clipping to a
metric's range, and bold only where the paired interval excludes 0."""
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from lico_tune.results import build_report, render
from lico_tune.results.power import mde_paired, seeds_for_half_width, tost_paired
from lico_tune.results.ranges import metric_range
from lico_tune.results.report import parse_margins
from lico_tune.results.stats import BOOTSTRAP_MIN_N, bootstrap_interval, correct, t_interval
from lico_tune.results.table import build_results

ARMS = ("ce", "lico", "other")
METRICS = ("test/acc", "saliency/gradcam/overall")


def fixed_results(n_seeds=3, seed=0, effect=2.0):
    """2 datasets x 3 arms x n seeds x 2 metrics, drawn once from a seeded generator."""
    rng = np.random.default_rng(seed)
    trials, i = [], 0
    for ds in ("digits", "fashion_mnist"):
        for arm in ARMS:
            for s in range(n_seeds):
                i += 1
                acc = 90 + rng.normal(0, 1) + (effect if arm == "lico" else 0)
                trials.append({"experiment": "e", "trial_id": f"t{i:02d}", "trial_dir": f"trial_{i}", "arm": arm,
                               "dataset": ds, "seed": s, "status": "finished", "usable": True, "damaged": False,
                               "params": {"train.seed": s},
                               "final": {"test/acc": acc, "saliency/gradcam/overall": 0.1 + rng.normal(0, 0.01)}})
    exps = [{"experiment": "e", "arms": {a: {} for a in ARMS}, "metrics": {"test/acc": "max"}}]
    return build_results("/nowhere", exps, trials), trials


def values(trials, arm, ds, metric):
    return np.array([t["final"][metric] for t in sorted(trials, key=lambda t: t["seed"])
                     if t["arm"] == arm and t["dataset"] == ds])


def test_t_and_paired_t_equal_scipy_on_the_fixed_table():
    res, trials = fixed_results()
    rep = build_report(res)[0]
    for _, c in rep.summary.iterrows():
        x = values(trials, c["arm"], c["dataset"], c["metric"])
        lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
        assert (c["mean"], c["ci_low"], c["ci_high"]) == pytest.approx((x.mean(), lo, hi), rel=1e-12)
    assert len(rep.paired) == 8
    for _, r in rep.paired.iterrows():
        a, b = values(trials, r["arm"], r["dataset"], r["metric"]), values(trials, "ce", r["dataset"], r["metric"])
        ref = sps.ttest_rel(a, b)
        assert (r["t"], r["p_t"], r["df"]) == pytest.approx((ref.statistic, ref.pvalue, 2), rel=1e-12)


@pytest.mark.parametrize("method,sm", [("holm", "holm"), ("bh", "fdr_bh")])
def test_correction_runs_over_the_whole_report_family(method, sm):
    res, _ = fixed_results()
    rep = build_report(res, correction=method)[0]
    p = rep.paired["p_t"].to_numpy()
    assert rep.family_n == 8, "all arms x datasets x metrics"
    assert rep.paired["p_adj"].to_numpy() == pytest.approx(multipletests(p, method=sm)[1], rel=1e-12)
    # Independently of statsmodels: Holm = running max of (m - rank) p; BH = running min from the top of m p / rank.
    order, m = np.argsort(p), len(p)
    if method == "holm":
        ref = np.maximum.accumulate(np.minimum(1, (m - np.arange(m)) * p[order]))
    else:
        ref = np.minimum.accumulate((m * p[order] / np.arange(1, m + 1))[::-1])[::-1].clip(max=1)
    back = np.empty(m)
    back[order] = ref
    assert rep.paired["p_adj"].to_numpy() == pytest.approx(back, rel=1e-12)
    # --family metric corrects each metric's 4 tests apart.
    per = build_report(res, correction=method, family="metric")[0]
    for metric, g in per.paired.groupby("metric"):
        assert g["p_adj"].to_numpy() == pytest.approx(multipletests(g["p_t"].to_numpy(), method=sm)[1])
    assert per.family_n == 4
    md = render([rep], "md")
    assert f"{'Holm' if method == 'holm' else 'Benjamini-Hochberg'} correction over every paired test" in md
    assert "8 test(s) in the largest family" in md
    adj = correct([0.01, float("nan"), 0.04], method)
    assert math.isnan(adj[1]) and adj[0] == pytest.approx(multipletests([0.01, 0.04], method=sm)[1][0]), \
        "NaN stays NaN and is not counted in the family"


def test_tost_equals_statsmodels_and_two_one_sided_scipy_tests():
    rng = np.random.default_rng(3)
    base = rng.normal(90, 1, 5)
    arm = base + rng.normal(0.1, 0.3, 5)
    r = tost_paired(arm, base, 0.5)
    assert r["p_tost"] == pytest.approx(ttost_paired(arm, base, -0.5, 0.5)[0], rel=1e-12)
    d = arm - base
    lower = sps.ttest_1samp(d, -0.5, alternative="greater").pvalue
    upper = sps.ttest_1samp(d, 0.5, alternative="less").pvalue
    assert r["p_tost"] == pytest.approx(max(lower, upper), rel=1e-12)
    assert math.isnan(tost_paired([1.0], [1.0], 0.5)["p_tost"]), "n = 1: no test"
    # In the report: TOST p (corrected) and an 'equivalent' verdict only where it is < alpha.
    res, trials = fixed_results(n_seeds=5, effect=0.0)
    rep = build_report(res, margins=["test/acc=1.5", "saliency/gradcam/overall=0.05"])[0]
    for _, row in rep.paired.iterrows():
        a, b = values(trials, row["arm"], row["dataset"], row["metric"]), values(trials, "ce", row["dataset"],
                                                                                   row["metric"])
        assert row["p_tost"] == pytest.approx(ttost_paired(a, b, -row["margin"], row["margin"])[0], rel=1e-12)
    assert rep.paired["p_tost_adj"].to_numpy() == pytest.approx(
        multipletests(rep.paired["p_tost"].to_numpy(), method="holm")[1])
    verdicts = {rep.verdict(r) for r in rep.paired.to_dict("records")}
    assert any(v.startswith("equivalent") for v in verdicts)
    for r in rep.paired.to_dict("records"):
        assert rep.verdict(r).startswith("equivalent") == (r["p_adj"] >= 0.05 and r["p_tost_adj"] < 0.05)


def test_mde_and_seeds_for_a_half_width():
    for n, sd in ((2, 1.0), (3, 0.7), (10, 2.0)):
        mde = mde_paired(sd, n, 0.05, 0.8)
        # Power at the MDE is 0.8: statsmodels, and the noncentral t directly (scipy).
        assert TTestPower().power(mde / sd, n, 0.05) == pytest.approx(0.8, abs=1e-6)
        crit, nc = sps.t.ppf(0.975, n - 1), mde / sd * math.sqrt(n)
        assert sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc) == pytest.approx(0.8, abs=1e-6)
    assert mde_paired(1.0, 2) > 10 * mde_paired(1.0, 10) / 3, "n = 2 detects only huge effects"
    for sd, w in ((1.0, 0.5), (3.0, 0.5), (0.2, 1.0)):
        n = seeds_for_half_width(sd, w)
        assert sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n) <= w
        if n > 2:
            assert sps.t.ppf(0.975, n - 2) * sd / math.sqrt(n - 1) > w, "the smallest such n"


def test_bootstrap_is_scipys_bca_and_refused_below_the_minimum_n():
    x = np.random.default_rng(1).normal(80, 2, BOOTSTRAP_MIN_N)
    ci = bootstrap_interval(x, seed=7)
    ref = sps.bootstrap((x,), np.mean, n_resamples=10_000, method="BCa", rng=np.random.default_rng(7))
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)
    assert ci["method"] == "bootstrap (BCa)" and bootstrap_interval(x, seed=7) == ci, "seeded"
    small = bootstrap_interval([1.0, 2.0, 3.0])
    assert small["method"] == f"t (bootstrap refused: n=3 < {BOOTSTRAP_MIN_N})"
    assert (small["ci_low"], small["ci_high"]) == pytest.approx((t_interval([1.0, 2.0, 3.0])["ci_low"],
                                                                 t_interval([1.0, 2.0, 3.0])["ci_high"]))


def coverage(n, reps=300, min_n=0, method="bootstrap", seed=0):
    rng = np.random.default_rng([seed, n])
    hit = 0
    for _ in range(reps):
        x = rng.normal(0.0, 1.0, n)
        ci = bootstrap_interval(x, n_resamples=1000, seed=int(rng.integers(1 << 30)), min_n=min_n) \
            if method == "bootstrap" else t_interval(x)
        hit += ci["ci_low"] <= 0.0 <= ci["ci_high"]
    return hit / reps


def test_bootstrap_guard_is_backed_by_a_coverage_simulation():
    """A fast version of benchmarks/bootstrap_coverage.py (full table in benchmarks/RESULTS.md):
    below the guard the BCa interval covers far less than its nominal 95%; at the guard it is
    close; the t interval holds at n = 3. 300 samples: Monte Carlo s.e. about 1.3-2.6 points."""
    assert coverage(3) < 0.85                              # simulated: 72%
    assert coverage(BOOTSTRAP_MIN_N) >= 0.87               # simulated: 92%
    assert coverage(3, method="t") >= 0.90                 # simulated: 95%


def test_intervals_are_clipped_to_the_metrics_range_and_bold_needs_separation():
    assert metric_range("test/acc") == (0, 100) and metric_range("best:test/acc_ema") == (0, 100)
    assert metric_range("saliency/gradcam/insertion") == (0, 1) and metric_range("saliency/rise/overall") == (-1, 1)
    # The shortcut probe's and the LeRF ordering's metrics (saliency/shortcut.py, faithfulness.py)
    assert metric_range("saliency/gradcam/patch_energy") == (0, 1) == metric_range("shortcut/patch_area")
    assert metric_range("shortcut/acc_patched") == (0, 100) and metric_range("shortcut/patch_reliance") == (-100, 100)
    assert metric_range("saliency/gradcam/lerf_morf") == (-1, 1) == metric_range("saliency/gradcam/patched_overall")
    assert metric_range("saliency/gradcam/deletion_lerf") == (0, 1) and metric_range("saliency/gradcam/seconds") != (0, 1)
    # The health numbers the report can tabulate (a learnable tau can run away: mean 7e10 +- 1.5e11 at n = 9)
    for name in ("health/tau", "health/tau_target", "health/dose0/mm", "health/dose/ot", "health/sinkhorn_iters"):
        assert metric_range(name) == (0, math.inf), name
    assert metric_range("health/grad_frac/mm") == (0, 1) and metric_range("health/text_cos_between") == (-1, 1)
    assert metric_range("health/mm_ref_change") is None and metric_range("health/tau_other") is None
    res, trials = fixed_results(n_seeds=2)
    for t in trials:                  # accuracies near 100 with a spread: the raw t interval passes 100
        if t["arm"] == "lico":
            t["final"]["test/acc"] = 99.9 - 3 * t["seed"]
    res = build_results("/nowhere", [{"experiment": "e", "arms": {a: {} for a in ARMS},
                                      "metrics": {"test/acc": "max"}}], trials)
    rep = build_report(res)[0]
    c = rep.cell("lico", "digits", "test/acc")
    assert c["clipped"] and c["ci_high"] == 100.0 and c["mean"] + c["half_width"] > 100
    assert rep.format_cell(c, "test/acc").endswith(", 100.00]")
    # Bold only where the best arm's paired interval against the baseline excludes 0.
    for ds in rep.datasets:
        for m in rep.metrics:
            for arm in rep.bold_arms(ds, m):
                assert arm in rep.best_arms(ds, m)
                if arm != "ce":
                    assert rep.pair(arm, ds, m)["ci_low"] > 0
    best = rep.best_arms("digits", "test/acc")
    assert best == {"lico"} and rep.pair("lico", "digits", "test/acc")["ci_low"] < 0
    assert rep.bold_arms("digits", "test/acc") == set(), "best mean but the interval includes 0: not bold"
    assert "**" not in rep.ablation_table(bold="md").loc["lico", "digits · test/acc"]
    # A clear effect at n = 5 is bold.
    rep5 = build_report(fixed_results(n_seeds=5, effect=5.0)[0])[0]
    assert rep5.bold_arms("digits", "test/acc") == {"lico"}


def test_a_health_number_is_never_bold_and_its_interval_is_clipped():
    """A larger tau is not a better arm, though its paired interval excludes 0; a runaway tau's t
    interval reaches below 0 and is clipped there."""
    res, trials = fixed_results(n_seeds=5, effect=5.0)
    for t in trials:
        t["final"]["health/tau"] = (1e11 * (t["seed"] % 2) + 1e9 * t["seed"]) if t["arm"] == "lico" else 0.3 + 0.01 * t["seed"]
        t["final"]["health/dose0/mm"] = 6.0 + t["seed"] + (60.0 if t["arm"] == "other" else 0.0)
    res = build_results("/nowhere", [{"experiment": "e", "arms": {a: {} for a in ARMS},
                                      "metrics": {"test/acc": "max"}}], trials)
    rep = build_report(res, metrics=["test/acc", "health/tau", "health/dose0/mm"])[0]
    assert rep.pair("other", "digits", "health/dose0/mm")["ci_low"] > 0 and rep.best_arms("digits", "health/dose0/mm") == {"other"}
    assert rep.bold_arms("digits", "health/dose0/mm") == set() == rep.bold_arms("digits", "health/tau")
    assert rep.bold_arms("digits", "test/acc") == {"lico"}, "accuracy is still bold where it separates"
    tau = rep.cell("lico", "digits", "health/tau")
    assert tau["mean"] - tau["half_width"] < 0 and tau["clipped"] and tau["ci_low"] == 0.0
    md = render([rep], "md")
    assert "Bold: the best arm (test/acc max) only where" in md and "health/tau max" not in md
    assert "the health numbers describe the LICO terms and are never bold" in md


def test_report_prints_correction_small_n_warning_and_mde():
    rep = build_report(fixed_results(n_seeds=2)[0])[0]
    md = render([rep], "md")
    assert "Holm correction over every paired test of the report" in md
    assert "### Small-n warnings" in md and "df = 1 (n = 2 seeds)" in md and "t(0.975) = 12.71" in md
    assert "Minimal detectable effect (paired t, two-sided α = 0.05, power 80%" in md
    mde = rep.paired.set_index(["dataset", "metric", "arm"]).loc[("digits", "test/acc", "lico"), "mde"]
    assert mde == pytest.approx(11.5499 * rep.pair("lico", "digits", "test/acc")["sd_diff"], rel=1e-4)
    assert parse_margins(["0.5", "saliency/gradcam/overall=0.02"], METRICS) == {
        "test/acc": 0.5, "saliency/gradcam/overall": 0.02}
    with pytest.raises(ValueError, match="METRIC=NUMBER"):
        parse_margins(["test/acc=abc"], METRICS)
    with pytest.raises(ValueError, match="must be > 0"):
        parse_margins(["-1"], METRICS)
