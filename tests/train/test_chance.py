"""The "at chance" check (lico_tune/train/chance.py): a trained model that learned nothing is flagged for
every arm (CE included), counted in the health table and named in a note above the report's tables;
old experiments without the flag still open in `report` and the dashboard.

The rule is checked on hand-worked counts against scipy's binomial tail computed independently
(binom.sf, not binomtest), and end to end on tiny CE runs on digits (an lr of 1e-9 learns nothing,
lr 0.1 for 30 steps learns)."""
import copy
import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats as sps
from streamlit.testing.v1 import AppTest

from lico_tune.keys import AT_CHANCE_FLAG, CHANCE_ALPHA, CHANCE_KEYS, COLLAPSED_FLAG, TOP_PRED_SHARE
from lico_tune.train.chance import COLLAPSE_SHARE, chance_check, check_predictions
from lico_tune.cli import main
from lico_tune.data import build_data
from lico_tune.data.loader import iterate_batches
from lico_tune.layout import PARAMS_FILE, RESULT_FILE, RUN_FILE, TRIAL_SPEC
from lico_tune.results import build_report, render
from lico_tune.results.health_table import chance_cells, chance_note, health_display, health_table
from lico_tune.results.ranges import metric_range
from lico_tune.results.table import build_results
from lico_tune.spec import validate_trial
from lico_tune.train import train_trial
from ray_helpers import REPO
from lico_tune.results import report_text as prose

pytestmark = pytest.mark.usefixtures("one_thread")


def tail(k: int, n: int, p0: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p0): the one-sided p, independently of binomtest."""
    return float(sps.binom.sf(k - 1, n, p0))


# ----------------------------------------------------------------------------- the rule

def test_rule_on_hand_worked_counts():
    # 105 of 1000 at p0 = 0.1: 0.53 sd above the 100 expected (sd 9.5): p ~ 0.3, at chance.
    c = chance_check(105, 1000, 0.1, 0.2)
    assert c.p_value == pytest.approx(tail(105, 1000, 0.1), rel=1e-9) and 0.25 < c.p_value < 0.35
    assert c.at_chance and not c.collapsed
    # 200 of 1000: 10 sd above: learned something.
    c = chance_check(200, 1000, 0.1, 0.2)
    assert c.p_value == pytest.approx(tail(200, 1000, 0.1), rel=1e-6) and c.p_value < 1e-20 and not c.at_chance
    # The boundary at alpha 0.01: the smallest count whose tail is below alpha is the first one above chance.
    k = next(k for k in range(100, 1001) if tail(k, 1000, 0.1) < CHANCE_ALPHA)
    assert 120 <= k <= 125    # mean + 2.33 sd = 122
    assert chance_check(k - 1, 1000, 0.1, 0.2).at_chance and not chance_check(k, 1000, 0.1, 0.2).at_chance
    # Nothing to test on: at chance (nothing shows learning), no crash.
    assert chance_check(0, 0, 0.0, 0.0).at_chance and not chance_check(0, 0, 0.0, 0.0).collapsed


def test_rule_on_predictions_collapse_and_imbalance():
    balanced = torch.arange(10).repeat_interleave(100)            # 1000 labels, 100 per class
    one_class = check_predictions(torch.full((1000,), 3), balanced)
    assert (one_class.correct, one_class.n, one_class.p0, one_class.top_pred) == (100, 1000, 0.1, 3)
    assert one_class.top_pred_share == 1.0 and one_class.collapsed and one_class.at_chance
    assert one_class.p_value == pytest.approx(tail(100, 1000, 0.1), rel=1e-9)
    m = one_class.metrics()
    assert set(m) == set(CHANCE_KEYS) and m[AT_CHANCE_FLAG] == 1.0 and m[COLLAPSED_FLAG] == 1.0
    assert all(metric_range(k) == (0.0, 1.0) for k in CHANCE_KEYS)     # intervals of them are clipped to [0, 1]
    # The collapse threshold: 899 of 1000 one class is not collapsed, 900 is.
    for n_top, collapsed in ((899, False), (900, True)):
        pred = torch.cat([torch.zeros(n_top, dtype=torch.long), torch.arange(1000 - n_top) % 9 + 1])
        c = check_predictions(pred, balanced)
        assert c.top_pred_share == n_top / 1000 and c.collapsed is collapsed and COLLAPSE_SHARE == 0.9
    # Imbalanced: 700 of class 0, 100 each of 1..3. Always answering 0 gets 70%: p0 is the majority share.
    labels = torch.cat([torch.zeros(700, dtype=torch.long), torch.arange(1, 4).repeat_interleave(100)])
    majority = check_predictions(torch.zeros(1000, dtype=torch.long), labels)
    assert majority.p0 == 0.7 and majority.correct == 700 and majority.at_chance and majority.collapsed
    assert majority.p_value == pytest.approx(tail(700, 1000, 0.7), rel=1e-9)
    # Right on all of class 0 and on 60 of the others: 76% is above 70% (p ~ 1e-5).
    better = labels.clone()
    better[760:] = 0
    c = check_predictions(better, labels)
    assert c.correct == 760 and c.p_value == pytest.approx(tail(760, 1000, 0.7), rel=1e-6) and not c.at_chance
    assert c.top_pred_share == 0.94 and c.collapsed      # still collapsed: the flags are independent


def test_warning_text_says_what_and_what_to_do():
    c = chance_check(108, 1000, 0.103, 0.5)
    [warning] = c.warnings()
    w = str(warning)
    assert warning.kind == "at chance" and w.startswith("at chance: test accuracy 10.8% on 1000 images is not above the 10.3% of always answering "
                        "the most frequent class (binomial p = ")
    assert f"p = {tail(108, 1000, 0.103):.2g})" in w and "Train longer or check lr." in w and "; " not in w
    assert chance_check(500, 1000, 0.103, 0.5).warnings() == []
    [_, collapsed] = check_predictions(torch.zeros(10, dtype=torch.long), torch.arange(10)).warnings()
    assert collapsed.kind == "collapsed" and str(collapsed).startswith("collapsed: 100.0% of the 10 test images are predicted as class 0")


# ----------------------------------------------------------------------------- in a real trial

CE = {"data": {"name": "digits"}, "model": {"backbone": "tiny_cnn"}, "lico": {"alpha": 0.0, "beta": 0.0},
      "train": {"epochs": 1, "batch_size": 64, "lr": 0.1, "steps_per_epoch": 30, "seed": 0, "ema": 0.9,
                "log_every": 1000, "threads": 1},
      "eval": {"batch_size": 512, "n_images": 0, "gallery_images": 0, "ses": False}}


def _ce_run(tmp_path, name, **train):
    tree = copy.deepcopy(CE)
    tree["train"].update(train)
    cfg = validate_trial(tree)
    logs, reports = [], []
    final = train_trial(cfg, tmp_path / name, log=logs.append, report=lambda m, c: reports.append(m))
    return cfg, final, logs, reports


def test_ce_trial_that_learns_nothing_is_flagged_and_one_that_learns_is_not(tmp_path):
    cfg, final, logs, reports = _ce_run(tmp_path, "dead", lr=1e-9, steps_per_epoch=2, epochs=2)
    labels = torch.cat([y for _, y in iterate_batches(build_data(cfg.data, seed=0).test, 512, shuffle=False, seed=0)])
    n, p0 = len(labels), torch.bincount(labels).max().item() / len(labels)
    # The explained model is the EMA one (train.ema on, eval.model 'ema'): its accuracy is what is tested.
    correct = round(final["test/acc_ema"] * n / 100)
    assert final["eval/chance_p"] == pytest.approx(tail(correct, n, p0), rel=1e-9)
    assert final[AT_CHANCE_FLAG] == 1.0 and final["eval/chance_p"] >= CHANCE_ALPHA
    assert 0 < final[TOP_PRED_SHARE] <= 1 and final[COLLAPSED_FLAG] == float(final[TOP_PRED_SHARE] >= 0.9)
    flagged = [w for w in final["warnings"] if w.startswith("at chance: test accuracy (EMA weights) ")]
    assert len(flagged) == 1 and f"on {n} images" in flagged[0], final["warnings"]
    assert sum(line.startswith("WARNING at chance: ") for line in logs) == 1
    written = json.loads((tmp_path / "dead" / "metrics.json").read_text())
    assert written["warnings"] == final["warnings"] and written[AT_CHANCE_FLAG] == 1.0
    assert written["health/warnings"] == "; ".join(final["warnings"])
    # Reported at the end only; the first report carries the keys as NaN (Ray fixes its columns there).
    assert all(math.isnan(reports[0][k]) for k in CHANCE_KEYS) and reports[-1][AT_CHANCE_FLAG] == 1.0
    assert set(reports[0]) == set(reports[-1]) - {"health/warnings"}

    _, final, logs, _ = _ce_run(tmp_path, "learns", ema=None)
    assert final["test/acc"] > 30, final["test/acc"]
    correct = round(final["test/acc"] * n / 100)
    assert final["eval/chance_p"] == pytest.approx(tail(correct, n, p0), rel=1e-6)
    assert final["eval/chance_p"] < CHANCE_ALPHA
    assert final[AT_CHANCE_FLAG] == 0.0 and final[COLLAPSED_FLAG] == 0.0 and final[TOP_PRED_SHARE] < 0.9
    assert final["warnings"] == [] and not any(line.startswith("WARNING") for line in logs)


# ----------------------------------------------------------------------------- results side

def _frame(rows):
    return pd.DataFrame(rows)


def test_health_table_counts_at_chance_for_ce_arms_and_keeps_grad_columns_empty():
    rows = [{"arm": "ce", "dataset": "digits", AT_CHANCE_FLAG: float(i < 3), COLLAPSED_FLAG: 0.0} for i in range(5)]
    rows += [{"arm": "ce", "dataset": "fmnist", AT_CHANCE_FLAG: 0.0, COLLAPSED_FLAG: 0.0} for _ in range(2)]
    rows += [{"arm": "lico", "dataset": "digits", AT_CHANCE_FLAG: 0.0, COLLAPSED_FLAG: 0.0,
              "health/grad_frac/ce": 0.5, "health/grad_frac/mm": 0.3, "health/grad_frac/ot": 0.2,
              "health/mm_ref_change": -0.1, "health/warn/mm_inactive": 0.0} for _ in range(2)]
    shown = health_display(health_table(_frame(rows))).set_index(["arm", "dataset"])
    assert shown.loc[("ce", "digits"), "warnings"] == "at chance 3/5"
    assert shown.loc[("ce", "fmnist"), "warnings"] == "none" and shown.loc[("lico", "digits"), "warnings"] == "none"
    for col in ("mm_ref_change", "grad² ce", "grad² mm", "grad² ot"):
        assert shown.loc[("ce", "digits"), col] == "-" and shown.loc[("lico", "digits"), col] != "-"
    assert chance_cells(_frame(rows)) == [{"arm": "ce", "dataset": "digits", "k": 3, "n": 5, "trials": []}]
    # An older trial without the flag counts in neither k nor n; an arm of only such trials shows '-'.
    old = rows + [{"arm": "ce", "dataset": "digits"}, {"arm": "old", "dataset": "digits"}]
    assert chance_cells(_frame(old)) == [{"arm": "ce", "dataset": "digits", "k": 3, "n": 5, "trials": []}]
    # With the trials' ids (the results table has them), each trial at chance is named.
    named = _frame([{**row, "trial_id": f"t_{i:05d}"} for i, row in enumerate(rows)])
    cells = chance_cells(named)
    assert cells == [{"arm": "ce", "dataset": "digits", "k": 3, "n": 5, "trials": ["t_00000", "t_00001", "t_00002"]}]
    assert "ce · digits: 3/5 trials (t_00000, t_00001, t_00002)" in chance_note(cells)
    table = health_table(_frame(old)).set_index(["arm", "dataset"])
    assert table.loc[("ce", "digits"), "trials"] == 6 and table.loc[("old", "digits"), "warnings"] == "-"


def _results(flags):
    """2 arms x 1 dataset x 3 seeds; `flags`: arm -> the at-chance flag of each seed (None: not reported)."""
    rng = np.random.default_rng(0)
    trials = []
    for arm in ("ce", "lico"):
        for s in range(3):
            final = {"test/acc": 11 + rng.normal(), "saliency/gradcam/pointing": 0.3 + rng.normal(0, 0.01)}
            if flags.get(arm) is not None:
                final[AT_CHANCE_FLAG] = flags[arm][s]
            trials.append({"experiment": "e", "trial_id": f"{arm}{s}", "trial_dir": f"trial_{arm}{s}", "arm": arm,
                           "dataset": "digits", "seed": s, "status": "finished", "usable": True, "damaged": False,
                           "params": {"train.seed": s}, "final": final})
    exps = [{"experiment": "e", "arms": {"ce": {}, "lico": {}}, "metrics": {"test/acc": "max"}}]
    return build_results("/nowhere", exps, trials)


def test_report_prints_the_note_above_the_tables():
    rep = build_report(_results({"ce": [1.0, 1.0, 0.0], "lico": [1.0, 1.0, 1.0]}),
                       metrics=["test/acc", "saliency/gradcam/pointing"])[0]
    assert rep.at_chance == [{"arm": "ce", "dataset": "digits", "k": 2, "n": 3, "trials": ["ce0", "ce1"]},
                             {"arm": "lico", "dataset": "digits", "k": 3, "n": 3, "trials": ["lico0", "lico1", "lico2"]}]
    md = render([rep], "md")
    note = md.index("⚠ At chance: ce · digits: 2/3 trials (ce0, ce1), lico · digits: 3/3 trials (lico0, lico1, lico2).")
    assert note < md.index("### Ablation table") < md.index("### Paired differences")
    assert "saliency and pointing numbers, and the paired comparisons of them below, are not evidence about LICO" in md
    assert "| ce | digits | 3 | - | - | - | - | - | - | at chance 2/3 |" in md      # the health table counts CE too
    data = json.loads(render([rep], "json"))["experiments"][0]
    assert data["at_chance"] == rep.at_chance and data["chance_warnings"] == prose.chance_warnings(rep)
    assert "% ⚠ At chance: ce · digits: 2/3" in render([rep], "latex")
    # No trial at chance, or flags never reported (an old experiment): no note, the report is as before.
    for flags in ({"ce": [0.0] * 3, "lico": [0.0] * 3}, {}):
        rep = build_report(_results(flags), metrics=["test/acc"])[0]
        assert rep.at_chance == [] and "At chance" not in render([rep], "md")
    assert "### Health" not in render([rep], "md")      # old and CE-only: no health metrics at all


# ----------------------------------------------------------------------------- old experiments on disk

def _root(tmp_path, with_flag: bool):
    """A results root laid out as Ray Tune and lico-tune write it (ce and lico x 3 seeds, one epoch);
    with_flag False: trained before the at-chance check (the lico arm has only its LICO health flags)."""
    exp = tmp_path / "exp"
    exp.mkdir(parents=True)
    spec = {"search": {"metrics": {"test/acc": "max"}}}
    (exp / RUN_FILE).write_text(yaml.safe_dump({"spec": spec, "arms": {"ce": {}, "lico": {}}}))
    rng = np.random.default_rng(0)
    for i, (arm, seed) in enumerate((a, s) for a in ("ce", "lico") for s in range(3)):
        t = exp / f"trial_{i:05d}_{arm}"
        (t / "checkpoint_000000").mkdir(parents=True)
        (t / PARAMS_FILE).write_text(json.dumps({"arm": arm, "data.name": "digits", "train.seed": seed}))
        row = {"epoch": 1, "test/acc": 11 + rng.normal(), "saliency/gradcam/pointing": 0.3 + rng.normal(0, 0.01)}
        if arm == "lico":
            row.update({"health/grad_frac/mm": 0.2, "health/warn/mm_inactive": 0.0})
        if with_flag:
            row.update({AT_CHANCE_FLAG: 1.0, COLLAPSED_FLAG: 0.0,
                        "health/warnings": str(chance_check(40, 360, 0.103, 0.5).warnings()[0])})
        (t / RESULT_FILE).write_text(json.dumps(row) + "\n")
        (t / TRIAL_SPEC).write_text(yaml.safe_dump({"train": {"epochs": 1, "seed": seed}}))
    return tmp_path


def _page(root, monkeypatch, page: str = "ablations") -> AppTest:
    monkeypatch.setenv("LICO_TUNE_STORAGE", str(root))
    sys.path.insert(0, str(REPO / "dashboards"))
    at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=120).run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_old_experiment_without_the_flag_opens_in_report_and_dashboard(tmp_path, capsys, monkeypatch):
    old = _root(tmp_path / "old", with_flag=False)
    assert main(["report", str(old), "--no-catalog"]) == 0
    out = capsys.readouterr().out
    assert "At chance" not in out and "### Ablation table" in out
    ce_row = next(line for line in out.splitlines() if line.startswith("| ce | digits |"))
    assert ce_row.endswith("| - |"), ce_row      # CE without health flags: '-' (not reported), not 'none'
    at = _page(old, monkeypatch)
    assert at.subheader[0].value == "Ablation table" and not any("At chance" in w.value for w in at.warning)

    new = _root(tmp_path / "new", with_flag=True)
    assert main(["report", str(new), "--no-catalog"]) == 0
    out = capsys.readouterr().out
    named = "ce · digits: 3/3 trials ({}), lico · digits: 3/3 trials ({}).".format(
        *(", ".join(t.name for t in sorted(new.glob(f"exp/trial_*_{arm}"))) for arm in ("ce", "lico")))
    assert "⚠ At chance: " + named in out, [ln for ln in out.splitlines() if "At chance" in ln]
    at = _page(new, monkeypatch)
    assert any("At chance: " + named in w.value for w in at.warning)
    # The trial page shows a CE trial's warning (CE has no LICO health curves) ...
    at = _page(new, monkeypatch, "trial")
    assert [w.value for w in at.warning if "at chance: test accuracy 11.1% on 360 images" in w.value]
    assert "Health of the LICO terms" not in [s.value for s in at.subheader]
    # ... and nothing of the kind for an old trial.
    at = _page(old, monkeypatch, "trial")
    assert not [w.value for w in at.warning if "at chance" in w.value]
