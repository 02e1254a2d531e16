"""A report against several baselines (`--baseline ce --baseline lico`): every (arm, baseline) pair
once, the correction over all of them together (checked against statsmodels), the first baseline
leading; one baseline prints exactly what it did before; every format names the baseline per row;
an unknown second baseline is refused like the first (exit 2, no traceback)."""
import io
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from lico_tune.cli import main
from lico_tune.layout import PARAMS_FILE, RESULT_FILE, RUN_FILE, TRIAL_SPEC
from lico_tune.results import build_report, render
from test_stats import ARMS, fixed_results, values
from lico_tune.results import report_text as prose

PAIRS = {("lico", "ce"), ("other", "ce"), ("other", "lico")}


@pytest.mark.parametrize("method,sm", [("holm", "holm"), ("bh", "fdr_bh")])
def test_two_baselines_give_every_pair_once_corrected_over_all_rows(method, sm):
    res, trials = fixed_results()
    rep = build_report(res, baseline=["ce", "lico"], correction=method, margins=["test/acc=1.5"])[0]
    p = rep.paired
    assert rep.baseline == "ce" and rep.baselines == ["ce", "lico"] and rep.arms == list(ARMS)
    assert set(zip(p["arm"], p["baseline"])) == PAIRS, "ce − lico is lico − ce the other way round: absent"
    assert len(p) == 3 * 2 * 2, "3 pairs x 2 datasets x 2 metrics"
    assert list(dict.fromkeys(p["baseline"])) == ["ce", "lico"], "baseline by baseline, in the order given"
    for r in p.to_dict("records"):
        a, b = values(trials, r["arm"], r["dataset"], r["metric"]), values(trials, r["baseline"], r["dataset"],
                                                                               r["metric"])
        assert r["p_t"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-12)
    # One family over both baselines: the adjusted p of every row, the TOST p, and the size printed.
    assert p["p_adj"].to_numpy() == pytest.approx(multipletests(p["p_t"].to_numpy(), method=sm)[1], rel=1e-12)
    tost = p.dropna(subset=["p_tost"])
    assert len(tost) == 6 and tost["p_tost_adj"].to_numpy() == pytest.approx(
        multipletests(tost["p_tost"].to_numpy(), method=sm)[1], rel=1e-12)
    assert rep.family_n == len(p) == 12
    md = render([rep], "md")
    assert "### Paired differences against `ce` and `lico` (matched seeds)" in md
    assert "12 test(s) in the largest family" in md and "(all arms × baselines × datasets × metrics)" in md
    assert "Mean difference arm − baseline" in md and "not repeated the other way round" in md
    assert "other − lico" in md and "lico − ce" in md and "ce − lico" not in md
    table = rep.paired_table()
    assert len(table) == 12 and table["verdict"].notna().all() and (table["MDE (80% power)"] != "–").all()
    assert "⚠ Small n: 12 of 12 comparisons have df = 2" in md
    # --family metric: each metric's tests across both baselines.
    per = build_report(res, baseline=["ce", "lico"], correction=method, family="metric")[0]
    for _, g in per.paired.groupby("metric"):
        assert len(g) == 6 and g["p_adj"].to_numpy() == pytest.approx(multipletests(g["p_t"].to_numpy(),
                                                                                    method=sm)[1], rel=1e-12)
    assert per.family_n == 6


def test_the_first_baseline_leads_the_arms_and_the_bold_rule():
    res, _ = fixed_results(n_seeds=5, effect=5.0)
    rep = build_report(res, baseline=["lico", "ce"])[0]
    assert rep.arms == ["lico", "ce", "other"]
    assert set(zip(rep.paired["arm"], rep.paired["baseline"])) == {("ce", "lico"), ("other", "lico"), ("other", "ce")}
    assert rep.pair("other", "digits", "test/acc")["baseline"] == "lico"
    assert rep.pair("other", "digits", "test/acc", baseline="ce")["baseline"] == "ce"
    # lico is best by 5 points: bold as the leading baseline when every other arm is separated from it.
    assert rep.bold_arms("digits", "test/acc") == build_report(res, baseline="lico")[0].bold_arms("digits", "test/acc")
    assert "against the first baseline (lico) excludes 0" in prose.caption(rep)


def test_one_baseline_prints_what_it_did_before():
    res, _ = fixed_results()
    reps = [build_report(res, baseline=b) for b in (None, "ce", ["ce", "ce"])]
    for fmt in ("md", "csv", "json", "latex"):
        assert len({render(r, fmt) for r in reps}) == 1, f"{fmt}: the default, 'ce' and ['ce', 'ce'] print the same"
    md = render(reps[0], "md")
    assert "### Paired differences against `ce` (matched seeds)" in md and "Mean difference arm − ce with" in md
    assert "baselines" not in md and "first baseline" not in md


def test_every_format_names_the_baseline_of_each_row():
    res, _ = fixed_results()
    reps = build_report(res, baseline=["ce", "lico"])
    csv = pd.read_csv(io.StringIO(render(reps, "csv")))
    paired = csv[csv["table"] == "paired"]
    assert len(paired) == 12 and set(zip(paired["arm"], paired["baseline"])) == PAIRS
    data = json.loads(render(reps, "json"))["experiments"][0]
    assert data["baseline"] == "ce" and data["correction"]["tests"] == 12
    assert {(r["arm"], r["baseline"]) for r in data["paired"]} == PAIRS and all(r["verdict"] for r in data["paired"])
    tex = render(reps, "latex")
    assert "Paired differences against ce and lico on matched seeds" in tex and "other $-$ lico" in tex


def fake_root(tmp_path):
    """A results root with one finished experiment (3 arms x 2 seeds, one epoch each), written as
    Ray Tune and lico-tune lay it out: the plan, and per trial params, results and its spec."""
    exp = tmp_path / "exp"
    exp.mkdir()
    spec = {"search": {"metrics": {"test/acc": "max"}}}
    (exp / RUN_FILE).write_text(yaml.safe_dump({"spec": spec, "arms": {a: {} for a in ARMS}}))
    rng = np.random.default_rng(0)
    for i, (arm, seed) in enumerate((a, s) for a in ARMS for s in range(2)):
        t = exp / f"trial_{i:05d}_{arm}"
        (t / "checkpoint_000000").mkdir(parents=True)
        (t / PARAMS_FILE).write_text(json.dumps({"arm": arm, "data.name": "digits", "train.seed": seed}))
        (t / RESULT_FILE).write_text(json.dumps({"epoch": 1, "test/acc": 90 + rng.normal()}) + "\n")
        (t / TRIAL_SPEC).write_text(yaml.safe_dump({"train": {"epochs": 1, "seed": seed}}))
    return tmp_path


def test_cli_takes_repeated_baselines_and_refuses_an_unknown_second_one(tmp_path, capsys):
    root = str(fake_root(tmp_path))
    assert main(["report", root, "--no-catalog", "--format", "json", "--baseline", "ce", "--baseline", "lico"]) == 0
    data = json.loads(capsys.readouterr().out)["experiments"][0]
    assert {(r["arm"], r["baseline"]) for r in data["paired"]} == PAIRS and data["correction"]["tests"] == 3
    for argv in (["--baseline", "ce", "--baseline", "nope"], ["--baseline", "nope"]):
        assert main(["report", root, "--no-catalog", *argv]) == 2
        err = capsys.readouterr().err
        assert "--baseline 'nope' is not an arm with finished trials; arms: ce, lico, other" in err
        assert "Traceback" not in err


def test_only_arms_is_a_declared_family_of_those_contrasts(capsys):
    """`--arm lico`: the tables and the tests hold lico and the baseline only, so Holm runs over the
    declared contrasts (2 datasets x 2 metrics), with the same p values as in the full report."""
    res, _ = fixed_results()
    full = build_report(res, baseline="ce")[0]
    rep = build_report(res, baseline="ce", only_arms=["lico"])[0]
    assert rep.arms == ["ce", "lico"] and set(rep.paired["arm"]) == {"lico"} and rep.family_n == 4
    mine = rep.paired.set_index(["dataset", "metric"])["p_t"]
    theirs = full.paired[full.paired["arm"] == "lico"].set_index(["dataset", "metric"])["p_t"]
    assert mine.sort_index().to_numpy() == pytest.approx(theirs.sort_index().to_numpy(), rel=1e-12)
    assert rep.paired["p_adj"].to_numpy() == pytest.approx(multipletests(rep.paired["p_t"].to_numpy(),
                                                                         method="holm")[1], rel=1e-12)
    with pytest.raises(KeyError, match="no finished trial of arm nope"):
        build_report(res, baseline="ce", only_arms=["nope"])
