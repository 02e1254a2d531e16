"""search.repeats (each proposal on N seeds, the searcher told their mean), the validation split,
and the refusal of selection on the test set."""
import copy
import json
import statistics

import numpy as np
import optuna
import pytest
import torch
import yaml
from ray_helpers import REPO, lico_tune, result_rows, trial_dirs, write_spec
from scipy import stats

from lico_tune.data import build_data
from lico_tune.data.split import validation_indices
from lico_tune.plan import plan_search
from lico_tune.keys import TRIAL_INDEX, config_id
from lico_tune.spec import SpecError, validate_spec
from lico_tune.plan.resolve import resolve_trial
from lico_tune.results import report_text as prose


def spec_of(trial_tree, **sections):
    return validate_spec({"name": "t", "base": copy.deepcopy(trial_tree), **sections})


EPS = {"lico.ot.epsilon": {"loguniform": [0.05, 1.0]}}
ON_PURPOSE = ["lico.ot.epsilon"]   # inert with the tiny trial's one text point per class: these test repeats, not epsilon


# ----------------------------------------------------------------------------- plan (no Ray)


@pytest.mark.parametrize("search, message", [
    ({"space": EPS, "algorithm": "optuna", "repeats": 3, "scheduler": {"name": "asha"}},
     "search.repeats 3 with search.scheduler 'asha'"),
    ({"space": {**EPS, "train.seed": {"grid": [0, 1]}}, "algorithm": "optuna", "repeats": 2},
     "search.space.train.seed with search.repeats 2"),
    ({"metrics": {"test/acc": "max"}}, "search.metrics selects on test-set metrics (test/acc)"),
    ({"metrics": {"saliency/gradcam/overall": "max"}}, "selects on test-set metrics (saliency/gradcam/overall)"),
    ({"metrics": {"val/saliency/gradcam/overall": "max"}}, "set base.eval.val_saliency: true"),
])
def test_bad_repeats_and_test_selection_are_refused(tiny_trial_tree, tmp_path, search, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_search(spec_of(tiny_trial_tree, search=search), storage=str(tmp_path))


def test_val_metrics_need_a_validation_split(tiny_trial_tree, tmp_path):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["data"]["val_fraction"] = 0.0
    with pytest.raises(SpecError, match="data.val_fraction is 0"):
        plan_search(spec_of(tree, search={"metrics": {"val/acc": "max"}}), storage=str(tmp_path))


def test_test_selection_with_the_override_plans_and_warns(tiny_trial_tree, tmp_path, capsys):
    plan = plan_search(spec_of(tiny_trial_tree, search={"metrics": {"test/acc": "max"},
                                                        "allow_test_selection": True}), storage=str(tmp_path))
    assert plan.metrics == {"test/acc": "max"}
    assert "WARNING search.allow_test_selection: selecting on test/acc" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_cli_refuses_a_spec_searching_test_acc_with_exit_2(tiny_trial_tree, tmp_path, capsys, command):
    from lico_tune.cli import main
    spec = write_spec(tmp_path / "s.yaml", copy.deepcopy(tiny_trial_tree), search={"metrics": {"test/acc": "max"}})
    args = [command, str(spec)] + (["--storage", str(tmp_path)] if command == "run" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "test/acc" in err and "val/acc" in err and "allow_test_selection" in err and "Traceback" not in err


def test_grid_repeats_are_a_seed_axis_and_share_a_config_id(tiny_trial_tree, tmp_path):
    from lico_tune.tune.searchers import search_algorithm
    tree = copy.deepcopy(tiny_trial_tree)
    tree["train"]["seed"] = 10
    plan = plan_search(spec_of(tree, ablation={"ce": {"lico.alpha": 0, "lico.beta": 0}, "lico": {}},
                               search={"repeats": 3}), storage=str(tmp_path))
    assert plan.n_trials == 2 * 3
    _, space, num_samples = search_algorithm(plan)
    assert space[TRIAL_INDEX] == {"grid_search": [0, 1, 2]} and num_samples == 1
    seeds = [resolve_trial(plan.runtime(), {"arm": "ce", TRIAL_INDEX: i}).train.seed for i in range(3)]
    assert seeds == [10, 11, 12]
    ids = {config_id({"arm": "ce", TRIAL_INDEX: i}) for i in range(3)}
    assert len(ids) == 1 and ids != {config_id({"arm": "lico", TRIAL_INDEX: 0})}
    assert config_id({"arm": "ce", "train.seed": 0}) == config_id({"arm": "ce", "train.seed": 1})


def test_repeat_objective_is_the_mean_or_the_t_lower_bound():
    from lico_tune.tune.repeater import repeat_objective
    x = [80.0, 83.0, 89.0]
    assert repeat_objective(x, "max", "mean") == pytest.approx(84.0)
    assert repeat_objective([*x, float("nan")], "max", "mean") == pytest.approx(84.0), "a failed repeat is skipped"
    low, high = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
    assert repeat_objective(x, "max", "lcb") == pytest.approx(low)
    assert repeat_objective(x, "min", "lcb") == pytest.approx(high), "for a minimised metric: the upper end"


# ----------------------------------------------------------------------------- validation split


def test_validation_split_is_stratified_disjoint_and_covers_the_training_split():
    labels = torch.arange(10).repeat_interleave(torch.tensor([50, 60, 70, 80, 90, 100, 110, 120, 130, 140]))
    train, val = validation_indices(labels, 0.1, seed=3)
    assert len(val) == round(0.1 * len(labels))
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(len(labels)))
    share = torch.bincount(labels[val], minlength=10).double() / torch.bincount(labels).double()
    assert (share - 0.1).abs().max() < 0.02, share          # every class ~10%: stratified
    again, val2 = validation_indices(labels, 0.1, seed=3)
    assert torch.equal(val, val2) and not torch.equal(val, validation_indices(labels, 0.1, seed=4)[1])
    with pytest.raises(ValueError, match="val_fraction"):
        validation_indices(labels[:5], 0.05, seed=0)


def test_validation_images_are_the_same_for_every_trial_seed_and_never_train_or_test():
    from lico_tune.data.digits import _load
    from lico_tune.spec import DataConfig
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    cfg = DataConfig(name="digits", val_fraction=0.2, val_seed=7, train_subset=600, augment=False)
    a, b = build_data(cfg, seed=0), build_data(cfg, seed=1)
    raw = _load()
    _, val_idx = validation_indices(raw.y_train, 0.2, seed=7)
    assert len(a.val) == len(b.val) == round(0.2 * len(raw.y_train))
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.val.labels, b.val.labels), \
        "the validation split must not depend on the trial seed"
    assert torch.equal(a.val.images, raw.x_train[val_idx]) and not a.val.augment
    assert not torch.equal(a.train.images, b.train.images), "the trial seed still picks the training subset"
    # Original digits indices: validation never meets training (either seed) nor test.
    y = load_digits().target
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    tr = np.sort(tr)
    val_orig = set(tr[val_idx.numpy()].tolist())
    assert not val_orig & set(te.tolist())
    for bundle in (a, b):   # map each training image back to its row of the raw training split
        rows = {raw.x_train[i].numpy().tobytes(): i for i in range(len(raw.x_train))
                if i not in set(val_idx.tolist())}
        assert all(img.numpy().tobytes() in rows for img in bundle.train.images)
    assert len(a.train) == 600


# ----------------------------------------------------------------------------- a real sweep


def test_optuna_sweep_with_repeats_runs_each_proposal_on_3_seeds_and_tells_the_mean(ray_tmp, tmp_path,
                                                                                     tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["eval"]["n_images"] = 0
    spec = write_spec(tmp_path / "rep.yaml", tree, search={
        "algorithm": "optuna", "num_samples": 2, "repeats": 3, "space": EPS, "metrics": {"val/acc": "max"},
        "allow_inert": ON_PURPOSE})
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res"), "--name", "rep"], ray_tmp, timeout=300)
    assert out.returncode == 0, out.stdout[-5000:]
    study = optuna.load_study(study_name="rep", storage=f"sqlite:///{tmp_path / 'res' / 'rep' / 'optuna.db'}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2, "2 proposals, each told once"
    groups: dict = {}
    for trial in trial_dirs(tmp_path / "res" / "rep"):
        final = result_rows(trial)[-1]
        spec_seen = yaml.safe_load((trial / "trial_spec.yaml").read_text())
        groups.setdefault(final["config_id"], []).append(
            (spec_seen["lico"]["ot"]["epsilon"], spec_seen["train"]["seed"], final["val/acc"]))
        assert json.loads((trial / "provenance.json").read_text())["config_id"] == final["config_id"]
    assert len(groups) == 2 and all(len(g) == 3 for g in groups.values())
    for study_trial in complete:
        (group,) = [g for g in groups.values() if g[0][0] == pytest.approx(study_trial.params["lico.ot.epsilon"])]
        assert len({eps for eps, _, _ in group}) == 1, "one proposal, one epsilon"
        assert sorted(seed for _, seed, _ in group) == [0, 1, 2], "3 distinct seeds: base seed + 0, 1, 2"
        assert study_trial.value == pytest.approx(statistics.mean(acc for _, _, acc in group))
    # The run summary and `lico-tune report` name a configuration over its 3 seeds as best.
    means = {cid: statistics.mean(acc for _, _, acc in g) for cid, g in groups.items()}
    top = max(means.values())
    winners = {cid for cid, m in means.items() if m == pytest.approx(top)}   # a tiny run may tie
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("best val/acc (max):")]
    assert "(n=3 seeds) - configuration " in line, line
    assert line.split("- configuration ")[1].split(",")[0] in winners, line
    from lico_tune.results import build_report, load_results
    (rep,) = build_report(load_results(str(tmp_path / "res"), use_catalog=False), "rep", metrics=["val/acc"])
    (best,) = rep.best.to_dict("records")
    assert best["n"] == 3 and best["config_id"] in winners and best["mean"] == pytest.approx(top)
    assert any("pool different searched configurations" in w and "- · digits: 2" in w
               for w in prose.small_n_warnings(rep))


def test_best_configuration_is_a_configuration_over_all_its_seeds_not_a_lucky_trial():
    """The run summary's best: config A (3 seeds, mean 84) beats config B, whose one finished seed
    scored 95 but whose other repeats did not report: B has n = 1 < 3 and cannot compete."""
    from lico_tune.tune.summary import _best_lines
    a = {"lico.ot.epsilon": 0.1}
    rows = [{"trial_id": f"a{i}", "arm": None, "dataset": "digits", "config_id": "A",
             "params": {**a, TRIAL_INDEX: i}, "val/acc": acc} for i, acc in enumerate([80.0, 83.0, 89.0])]
    rows += [{"trial_id": "b0", "arm": None, "dataset": "digits", "config_id": "B",
              "params": {"lico.ot.epsilon": 0.5, TRIAL_INDEX: 0}, "val/acc": 95.0}]
    (line,) = _best_lines(rows, {"val/acc": "max"}, "x")
    half = stats.t.ppf(0.975, 2) * stats.sem([80.0, 83.0, 89.0])
    assert line == (f"best val/acc (max): 84 ± {half:.4g} (n=3 seeds) - configuration A, arm -, dataset digits, "
                    f"lico.ot.epsilon=0.1; trials a0, a1, a2")


def test_the_summarys_best_interval_is_clipped_to_the_metrics_range_as_the_reports():
    """Two seeds at 65.98 and 81.94 (make demo's digits CE): t(0.975, 1) x sem = 101.4, so the
    interval is printed clipped to accuracy's range, [0, 100], not as '73.96 ± 101.4'."""
    from lico_tune.tune.summary import _best_lines
    rows = [{"trial_id": f"c{i}", "arm": "ce", "dataset": "digits", "config_id": "C", "params": {"train.seed": i},
             "val/acc": acc} for i, acc in enumerate([65.98, 81.94])]
    (line,) = _best_lines(rows, {"val/acc": "max"}, "x")
    assert stats.t.ppf(0.975, 1) * stats.sem([65.98, 81.94]) > 100
    assert line.startswith("best val/acc (max): 73.96 [0, 100] (n=2 seeds) - configuration C, arm ce"), line


def test_random_with_repeats_goes_through_the_repeater_and_smoke_keeps_two_trials(tiny_trial_tree, tmp_path):
    from ray.tune.search.optuna import OptunaSearch
    from lico_tune.spec import load_spec
    from lico_tune.tune.repeater import SeedRepeater
    from lico_tune.tune.searchers import search_algorithm
    plan = plan_search(spec_of(tiny_trial_tree, search={"algorithm": "random", "num_samples": 4, "repeats": 3,
                                                        "space": EPS, "allow_inert": ON_PURPOSE}), storage=str(tmp_path))
    gen, space, num_samples = search_algorithm(plan)
    alg = gen.searcher                                  # inside its generator (tune/generator.py)
    assert isinstance(alg, SeedRepeater) and alg.repeat == 3 and isinstance(alg.searcher, OptunaSearch)
    assert space == {} and num_samples == plan.n_trials == 12
    smoke = plan_search(load_spec(REPO / "search_spaces" / "ot_eps.yaml"), storage=str(tmp_path), smoke=True)
    assert (smoke.spec.search.repeats, smoke.spec.search.num_samples, smoke.n_trials) == (2, 1, 2)


def test_one_seed_rule_for_config_ids_best_configs_and_the_dashboard():
    """selection.is_seed is the one rule: the seed, the train.seed field and Ray's repeat index are
    seeds; a searched value is not, not even one whose name holds 'seed'."""
    from lico_tune.keys import TRIAL_INDEX, config_id, is_seed
    assert all(is_seed(c) for c in ("seed", "train.seed", TRIAL_INDEX))
    assert not any(is_seed(c) for c in ("lico.ot.epsilon", "data.val_seed", "arm"))
    a = {"arm": "lico", "lico.ot.epsilon": 0.1, "train.seed": 0, TRIAL_INDEX: 0}
    assert config_id(a) == config_id({**a, "train.seed": 3, TRIAL_INDEX: 2}) != config_id({**a, "lico.ot.epsilon": 0.2})
