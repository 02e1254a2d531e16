"""Stricter specs and non-finite results (issue 24): each spec below was accepted (exit 0) and
trained something other than what it said, or failed later with a traceback; `lico-tune validate`
now refuses it (exit 2, one paragraph naming the culprit, no traceback) and accepts it again once
fixed. Results: a value that cannot be a measurement (Infinity, NaN at the end, an accuracy outside
0-100%) and an empty result.json are named in warnings and kept out of the means. (That every
shipped spec still plans: tests/tune/test_search.py.)"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import yaml

from lico_tune.cli import main
from lico_tune.errors import SpecError
from lico_tune.keys import SALIENCY_TAILS
from lico_tune.plan import plan_search
from lico_tune.spec import load_spec
from lico_tune.spec.limits import MAX_NAME_BYTES, SEED_MAX
from conftest import assert_refused

# A small valid spec: two arms, a dataset axis and a seed axis, selection on the validation split.
GOOD = {
    "name": "strict",
    "base": {"data": {"name": "digits", "val_fraction": 0.1}, "model": {"backbone": "tiny_cnn"},
             "train": {"epochs": 1, "ema": 0.99}, "eval": {"cams": ["gradcam"], "n_images": 8}},
    "ablation": {"ce": {"lico.alpha": 0, "lico.beta": 0}, "lico": {}},
    "search": {"space": {"train.seed": {"grid": [0, 1]}}, "algorithm": "grid", "metrics": {"val/acc": "max"}},
    "resources": {"cpu": 1},
}


def validate(tmp_path: Path, capsys, text: str, sets: list[str] = ()) -> tuple[int, str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    args = ["validate", str(spec)]
    for s in sets:
        args += ["--set", s]
    code = main(args)
    out = capsys.readouterr()
    return code, out.err


def dump(tree: dict) -> str:
    return yaml.safe_dump({**tree, "storage": "STORAGE"}, sort_keys=False)


def with_storage(text: str, tmp_path: Path) -> str:
    return text.replace("STORAGE", str(tmp_path / "results"))


def refused_then_fixed(tmp_path, capsys, bad: str, fixed: str, culprit: str, sets=(), fixed_sets=None):
    code, err = validate(tmp_path, capsys, with_storage(bad, tmp_path), sets)
    assert_refused((code, err), culprit, fix=False)
    assert err.startswith("error: ") and err.count("error: ") == 1
    code, err = validate(tmp_path, capsys, with_storage(fixed, tmp_path), sets if fixed_sets is None else fixed_sets)
    assert code == 0, err
    return err


def test_the_good_spec_validates(tmp_path, capsys):
    code, err = validate(tmp_path, capsys, with_storage(dump(GOOD), tmp_path))
    assert code == 0, err


# ----------------------------------------------------------------------------- YAML 1.1 booleans

NO_AXES = {**GOOD, "search": {**GOOD["search"], "space": {}}}


def with_raw(tree: dict, path: str, raw: str) -> str:
    """`tree` as YAML with the base field `path` written as the raw YAML text `raw` (e.g. yes)."""
    tree = copy.deepcopy(tree)
    node = tree["base"]
    *heads, leaf = path.split(".")
    for h in heads:
        node = node.setdefault(h, {})
    node[leaf] = "RAW_VALUE"
    return dump(tree).replace("RAW_VALUE", raw)


@pytest.mark.parametrize("path, word, fixed", [
    ("lico.alpha", "yes", "1.0"), ("train.epochs", "on", "1"), ("eval.n_images", "no", "0"),
    ("data.placed.clutter_contrast", "[yes, 0.5]", "[0.3, 0.5]"), ("train.seed", "true", "1"),
])
def test_a_yaml_boolean_is_not_a_number(tmp_path, capsys, path, word, fixed):
    refused_then_fixed(tmp_path, capsys, with_raw(NO_AXES, path, word), with_raw(NO_AXES, path, fixed),
                       f"base.{path}: write a number")
    # the same word through --set (a YAML value too)
    refused_then_fixed(tmp_path, capsys, dump(NO_AXES), dump(NO_AXES), f"base.{path}: write a number",
                       sets=[f"{path}={word}"], fixed_sets=[f"{path}={fixed}"])


def test_a_boolean_in_a_grid_of_a_number_field_is_refused(tmp_path, capsys):
    bad = copy.deepcopy(GOOD)
    bad["search"]["space"]["lico.alpha"] = {"grid": [True, 10.0]}
    good = copy.deepcopy(GOOD)
    good["search"]["space"]["lico.alpha"] = {"grid": [1.0, 10.0]}
    refused_then_fixed(tmp_path, capsys, dump(bad), dump(good), "lico.alpha: write a number")


def test_booleans_stay_booleans(tmp_path, capsys):
    """Boolean fields still take yes/no (data.augment: no is plain YAML for false)."""
    spec = copy.deepcopy(GOOD)
    spec["base"]["data"]["augment"] = "NO"
    code, err = validate(tmp_path, capsys, with_storage(dump(spec), tmp_path).replace("'NO'", "no"))
    assert code == 0, err


# ----------------------------------------------------------------------------- duplicates in a grid

@pytest.mark.parametrize("path, values, dup", [
    ("train.seed", [0, 0], "0"), ("lico.ot.epsilon", [0.1, 1, 0.10], "0.1"),
    ("data.name", ["digits", "digits"], "'digits'"),
])
def test_a_value_twice_in_a_grid_is_refused(tmp_path, capsys, path, values, dup):
    bad, good = copy.deepcopy(GOOD), copy.deepcopy(GOOD)
    bad["search"]["space"][path] = {"grid": values}
    good["search"]["space"][path] = {"grid": list(dict.fromkeys(values))}
    err = f"search.space.{path}: the value {dup} appears twice"
    refused_then_fixed(tmp_path, capsys, dump(bad), dump(good), err)


def test_a_value_twice_in_a_grid_given_by_set_is_refused(tmp_path, capsys):
    text = dump(GOOD)
    refused_then_fixed(tmp_path, capsys, text, text, "search.space.train.seed: the value 0 appears twice",
                       sets=["search.space={train.seed: {grid: [0, 1, 0]}}"],
                       fixed_sets=["search.space={train.seed: {grid: [0, 1, 2]}}"])


# ----------------------------------------------------------------------------- bounds

@pytest.mark.parametrize("path, bad, good", [
    ("search.num_samples", 10**9, 4), ("search.repeats", 10**6, 3), ("train.epochs", 10**7, 200),
    ("eval.n_images", 10**9, 100), ("train.steps_per_epoch", 10**12, 10), ("lico.ot.max_iter", 10**12, 100),
    ("eval.rise_n_masks", 10**9, 250), ("train.batch_size", 10**9, 128),
])
def test_counts_have_an_upper_bound(tmp_path, capsys, path, bad, good):
    tree = NO_AXES
    shown = path if path.startswith("search.") else f"base.{path}"
    refused_then_fixed(tmp_path, capsys, dump(tree), dump(tree), f"{shown}: Input should be less than or equal",
                       sets=[f"{path}={bad}"], fixed_sets=[f"{path}={good}"])


def test_num_samples_1e9_written_in_the_file_is_refused(tmp_path, capsys):
    tree = copy.deepcopy(GOOD)
    tree["search"]["space"] = {}
    tree["search"]["num_samples"] = 1.0e9
    good = copy.deepcopy(tree)
    good["search"]["num_samples"] = 2
    refused_then_fixed(tmp_path, capsys, dump(tree), dump(good), "search.num_samples")


def test_train_seed_is_bounded_to_what_torch_and_the_tables_hold(tmp_path, capsys):
    tree = copy.deepcopy(GOOD)
    tree["search"]["space"] = {}
    refused_then_fixed(tmp_path, capsys, dump(tree), dump(tree), "base.train.seed",
                       sets=[f"train.seed={2**64}"], fixed_sets=[f"train.seed={SEED_MAX}"])
    # repeat i trains seed + i: the last repeat must fit too
    refused_then_fixed(tmp_path, capsys, dump(tree), dump(tree), "the last repeat would train seed",
                       sets=[f"train.seed={SEED_MAX}", "search.repeats=2"],
                       fixed_sets=[f"train.seed={SEED_MAX - 1}", "search.repeats=2"])


def test_torch_accepts_the_seed_bounds():
    """The bound is real: torch seeds at both ends of it (and refuses one past 2^64 - 1)."""
    import torch
    from lico_tune.spec.limits import SEED_MIN
    torch.Generator().manual_seed(SEED_MAX)
    torch.Generator().manual_seed(SEED_MIN)
    with pytest.raises((RuntimeError, ValueError, OverflowError)):
        torch.Generator().manual_seed(2**64)


# ----------------------------------------------------------------------------- search metrics

@pytest.mark.parametrize("algo", ["grid", "optuna", "asha"])
@pytest.mark.parametrize("metric, hint", [("val/zz_nope", "no trial of this spec reports 'val/zz_nope'"),
                                          ("", "empty metric"),
                                          ("val/acc_em", "did you mean 'val/acc_ema'?"),
                                          ("val/saliency/gradcam/overal", "did you mean 'val/saliency/gradcam/overall'"),
                                          ("val/saliency/rise/overall", "no trial of this spec reports")])
def test_a_search_metric_no_trial_reports_is_refused(tmp_path, capsys, algo, metric, hint):
    tree = copy.deepcopy(GOOD)
    tree["base"]["eval"]["val_saliency"] = True
    if algo != "grid":
        tree["search"].update(algorithm="optuna" if algo == "optuna" else "random",
                              space={"lico.ot.epsilon": {"loguniform": [0.01, 1.0]}}, num_samples=2)
    if algo == "asha":
        tree["search"]["scheduler"] = {"name": "asha"}
    bad, good = copy.deepcopy(tree), copy.deepcopy(tree)
    bad["search"]["metrics"] = {metric: "max"}
    good["search"]["metrics"] = {"val/saliency/gradcam/overall" if "saliency" in metric else "val/acc": "max"}
    refused_then_fixed(tmp_path, capsys, dump(bad), dump(good), hint)


def test_every_key_the_metrics_table_writes_can_be_searched(tmp_path):
    """The accepted keys come from keys.py, which the saliency table (evaluate.METRICS) writes from."""
    from lico_tune.saliency.evaluate import METRICS
    assert [t for m in METRICS for t in m.tails] == [t for ts in SALIENCY_TAILS.values() for t in ts]
    tree = copy.deepcopy(GOOD)
    tree["base"]["eval"]["val_saliency"] = True
    tree["storage"] = str(tmp_path)
    spec_file = tmp_path / "s.yaml"
    for tail in ["seconds", *(t for ts in SALIENCY_TAILS.values() for t in ts)]:
        tree["search"]["metrics"] = {f"val/saliency/gradcam/{tail}": "max", "val/acc_ema": "max"}
        spec_file.write_text(yaml.safe_dump(tree))
        plan_search(load_spec(spec_file))
    tree["base"]["train"]["ema"] = None            # no EMA weights: nothing reports val/acc_ema
    spec_file.write_text(yaml.safe_dump(tree))
    with pytest.raises(SpecError, match="did you mean 'val/acc'"):
        plan_search(load_spec(spec_file))


# ----------------------------------------------------------------------------- storage and names

def test_empty_storage_is_refused(tmp_path, capsys):
    text = dump(GOOD)
    refused_then_fixed(tmp_path, capsys, text.replace("STORAGE", "''"), text, "storage: empty")


@pytest.mark.parametrize("name", ["a|b", "a\nb", "a/b", "x" * 300])
def test_names_fit_a_directory_and_a_table_cell(tmp_path, capsys, name):
    # the spec's name
    tree = copy.deepcopy(GOOD)
    bad = {**tree, "name": name}
    refused_then_fixed(tmp_path, capsys, dump(bad), dump(tree), "- name:")
    # an arm's name
    bad = copy.deepcopy(GOOD)
    bad["ablation"] = {name: {}, "ce": {"lico.alpha": 0}}
    err_part = "arm name"
    refused_then_fixed(tmp_path, capsys, dump(bad), dump(GOOD), err_part)


def test_run_name_fits_a_directory(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({**GOOD, "storage": str(tmp_path)}))
    loaded = load_spec(spec)
    for bad in ["x" * (MAX_NAME_BYTES + 1), "a|b", "a\nb"]:
        with pytest.raises(SpecError, match="--name"):
            plan_search(loaded, name=bad)
    plan_search(loaded, name="x" * MAX_NAME_BYTES)
    long_spec_name = plan_search(loaded.model_copy(update={"name": "y" * MAX_NAME_BYTES}))
    assert len(long_spec_name.experiment.encode()) < 255


# ----------------------------------------------------------------------------- the seed axis and arms

@pytest.mark.parametrize("search, culprit", [
    ({"space": {"train.seed": {"grid": [0, 1]}}}, "search.space.train.seed"),
    ({"space": {}, "repeats": 2}, "search.repeats 2"),
])
def test_an_arm_may_not_override_a_varied_seed(tmp_path, capsys, search, culprit):
    bad = copy.deepcopy(GOOD)
    bad["search"].update(search)
    bad["ablation"]["lico"] = {"train.seed": 5}
    good = copy.deepcopy(bad)
    good["ablation"]["lico"] = {}
    refused_then_fixed(tmp_path, capsys, dump(bad), dump(good),
                       f"ablation.lico.train.seed: arm 'lico' sets the seed, which {culprit} varies")
    # Without a varied seed an arm may set it (one seed per arm, nothing counted twice).
    fixed_seed = copy.deepcopy(bad)
    fixed_seed["search"] = {**GOOD["search"], "space": {}, "repeats": 1}
    code, err = validate(tmp_path, capsys, with_storage(dump(fixed_seed), tmp_path))
    assert code == 0, err


# ----------------------------------------------------------------------------- non-finite results

def write_experiment(root: Path, finals: dict[str, dict]) -> Path:
    """An experiment of one-epoch trials that Ray recorded as finished: {trial dir: its one reported
    row, or None for a 0-byte result.json}. Arms 'a' and 'b' (the dir's last letter), dataset
    'digits', one seed per trial."""
    exp = root / "strict-exp"
    exp.mkdir(parents=True)
    (exp / "lico_run.yaml").write_text(yaml.safe_dump({
        "experiment": "strict-exp", "arms": {"a": {}, "b": {}}, "n_trials": len(finals),
        "spec": {"search": {"metrics": {"val/acc": "max"}}}}))
    state = [[json.dumps({"trial_id": name[len("trial_"):-2], "status": "TERMINATED", "relative_logdir": name,
                          "config": {"arm": name[-1]}}), json.dumps({"last_result": {"epoch": 1}})]
             for name in finals]          # Ray's record: every trial finished
    (exp / "experiment_state-2026-12-05_18-00-00.json").write_text(json.dumps({"trial_data": state,
                                                                                "runner_data": {}}))
    for i, (name, row) in enumerate(finals.items()):
        arm = name.rsplit("_", 1)[1]
        t = exp / name
        t.mkdir()
        (t / "params.json").write_text(json.dumps({"arm": arm, "train.seed": i}))
        (t / "trial_spec.yaml").write_text(yaml.safe_dump({"train": {"epochs": 1, "seed": i}, "data": {"name": "digits"}}))
        (t / "checkpoint_000000").mkdir()
        if row is None:
            (t / "result.json").write_bytes(b"")
            continue
        (t / "result.json").write_text(json.dumps({"epoch": 1, "arm": arm, "dataset": "digits", **row}) + "\n")
    return exp


def test_infinite_nan_out_of_range_and_empty_results_are_named_and_left_out_of_the_means(tmp_path, capsys):
    from lico_tune.results import build_report, load_results
    finals = {
        "trial_00000_00000_a": {"val/acc": 80.0, "test/acc": 70.0},
        "trial_00000_00001_a": {"val/acc": 90.0, "test/acc": 72.0},
        "trial_00000_00002_a": {"val/acc": math.inf, "test/acc": 74.0},      # Infinity in result.json
        "trial_00000_00003_a": {"val/acc": math.nan, "test/acc": 76.0},      # NaN at the end
        "trial_00000_00004_b": {"val/acc": 60.0, "test/acc": 50.0},
        "trial_00000_00005_b": {"val/acc": 64.0, "test/acc": 150.0},          # accuracy over 100%
        "trial_00000_00006_b": None,                                          # 0-byte result.json
    }
    write_experiment(tmp_path, finals)
    assert "Infinity" in (tmp_path / "strict-exp" / "trial_00000_00002_a" / "result.json").read_text()
    res = load_results(tmp_path)
    trials = res.trials.set_index("trial_dir")
    warn = trials["warnings"]
    assert "val/acc is inf" in warn["trial_00000_00002_a"]
    assert "val/acc is NaN at the end" in warn["trial_00000_00003_a"]
    assert "test/acc is 150 at epoch 1, outside 0-100%" in warn["trial_00000_00005_b"]
    assert "result.json is empty (0 bytes" in warn["trial_00000_00006_b"]
    assert not trials.loc["trial_00000_00006_b", "usable"]
    assert warn["trial_00000_00000_a"] == "" and warn["trial_00000_00004_b"] == ""

    rep = build_report(res, "strict-exp")[0]
    assert rep.cell("a", "digits", "val/acc")["mean"] == pytest.approx(85.0)      # not inf, not 80/90/NaN mix
    assert rep.cell("a", "digits", "val/acc")["n"] == 2
    assert rep.cell("a", "digits", "test/acc")["mean"] == pytest.approx(73.0)     # the other keys stay
    assert rep.cell("b", "digits", "test/acc")["mean"] == pytest.approx(50.0)
    assert rep.cell("b", "digits", "val/acc")["mean"] == pytest.approx(62.0)
    named = {d["trial"] for d in rep.damaged}
    assert {"trial_00000_00002_a", "trial_00000_00003_a", "trial_00000_00005_b", "trial_00000_00006_b"} <= named

    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "| a | 85.00 " in out.out and "| b | 62.00 " in out.out     # the ablation table's means
    assert "warning: strict-exp/trial_00000_00002_a: val/acc is inf at epoch 1" in out.err
    assert "- ⚠ `trial_00000_00006_b`: result.json is empty (0 bytes" in out.out

    assert main(["report", str(tmp_path), "--metric", "val/ac"]) == 2      # report --metric: did you mean
    err = capsys.readouterr().err
    assert "no trial reported val/ac; did you mean 'val/acc'?" in err and "Traceback" not in err
