"""Spec -> Ray Tune: the translation and its errors, and real sweeps with Ray Tune and Optuna
(a smoke sweep of the quick start, an Optuna study in SQLite, a failing trial with retries)."""
import copy
import re

import optuna
import pytest
import yaml
from ray_helpers import REPO, lico_tune, result_rows, trial_dirs, write_spec

from lico_tune.errors import error_reason
from lico_tune.plan import plan_search
from lico_tune.plan.resolve import resolve_trial
from lico_tune.tune import build_tuner
from lico_tune.tune.searchers import OptunaCells, search_algorithm
from lico_tune.spec import SpecError, load_spec, validate_spec

SPECS = sorted((REPO / "search_spaces").glob("*.yaml"))


def spec_of(trial_tree, **sections):
    return validate_spec({"name": "t", "base": copy.deepcopy(trial_tree), **sections})


# ----------------------------------------------------------------------------- translation (no Ray)


def test_arms_cross_the_grid_and_seeds_and_sampled_fields_are_drawn(tiny_trial_tree, tmp_path):
    import ray
    from ray.tune.search.sample import Float, LogUniform
    spec = spec_of(tiny_trial_tree, ablation={"ce": {"lico.alpha": 0, "lico.beta": 0}, "lico": {}},
                   search={"space": {"data.name": {"grid": ["digits", "fashion_mnist"]},
                                     "train.seed": {"grid": [0, 1, 2]},
                                     "lico.alpha": {"loguniform": [0.1, 10.0]}},
                           "algorithm": "random", "num_samples": 2, "max_concurrent": 3},
                   resources={"cpu": 2, "gpu": 0.5})
    plan = plan_search(spec, name="x", storage=str(tmp_path))
    assert len(plan.cells) == 2 * 2 * 3 and plan.n_trials == 24
    alg, space, num_samples = search_algorithm(plan)
    assert space["arm"] == {"grid_search": ["ce", "lico"]}
    assert space["data.name"] == {"grid_search": ["digits", "fashion_mnist"]}
    assert isinstance(space["lico.alpha"], Float) and isinstance(space["lico.alpha"].sampler, LogUniform)
    assert num_samples == 2 and alg.max_concurrent == 3
    tuner = build_tuner(plan)
    assert not ray.is_initialized(), "building the Tuner must not start Ray"
    assert tuner._local_tuner.get_run_config().storage_path == str(tmp_path)

    # The arm wins over the space; the dataset axis changes the trial's dataset.
    cfg = resolve_trial(plan.runtime(), {"arm": "ce", "data.name": "fashion_mnist", "train.seed": 2,
                                         "lico.alpha": 3.0})
    assert (cfg.lico.alpha, cfg.lico.beta, cfg.data.name, cfg.train.seed) == (0, 0, "fashion_mnist", 2)
    cfg = resolve_trial(plan.runtime(), {"arm": "lico", "data.name": "digits", "train.seed": 0, "lico.alpha": 3.0})
    assert cfg.lico.alpha == 3.0 and cfg.data.name == "digits"

    # Resolved once: the plan keeps every cell's validated config, and a trial that is just its cell
    # reads it (the same object, nothing resolved again); a sampled trial resolves as the trainable does.
    assert len(plan.cell_configs) == len(plan.cells)
    for cell, kept in zip(plan.cells, plan.cell_configs):
        assert kept == resolve_trial(plan.runtime(), cell)
        assert plan.trial_config(dict(cell)) is kept
    sampled = {"arm": "lico", "data.name": "digits", "train.seed": 0, "lico.alpha": 3.0}
    assert plan.trial_config(sampled) == resolve_trial(plan.runtime(), sampled)
    assert plan.trial_config(sampled).lico.alpha == 3.0


@pytest.mark.parametrize("search, message", [
    ({"space": {"lico.ot.epsilonn": {"grid": [0.1]}}}, "did you mean 'lico.ot.epsilon'"),
    ({"space": {"lico.ot.epsilon": {"loguniform": [0.01, 1.0]}}}, "needs a sampling algorithm"),
    ({"space": {"train.seed": {"grid": [0, 1]}}, "algorithm": "optuna"}, "needs at least one sampled"),
    ({"metrics": {"val/acc": "max", "train/loss": "min"}, "scheduler": {"name": "asha"}},
     "Ray's ASHA stops trials on one metric"),
    ({"space": {"lico.ot.epsilon": {"loguniform": [0.0, 1.0]}}, "algorithm": "random"}, "loguniform needs low > 0"),
    ({"space": {"lico.ot.max_iter": {"randint": [0, 10]}}, "algorithm": "random"}, "lico.ot.max_iter"),
    ({"space": {"data.name": {"grid": ["digits", "mnist"]}}}, "data.name"),
    ({"space": {"eval.cams": {"choice": [["gradcam"], ["rise"]]}, "lico.alpha": {"uniform": [0, 1]}},
      "algorithm": "optuna"}, "must be scalars"),
])
def test_unsupported_or_invalid_searches_are_refused_before_anything_starts(tiny_trial_tree, tmp_path, search,
                                                                             message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_search(spec_of(tiny_trial_tree, search=search), storage=str(tmp_path))


def test_cli_run_refuses_a_bad_search_with_exit_2(tiny_trial_tree, tmp_path, capsys):
    from lico_tune.cli import main
    spec = write_spec(tmp_path / "s.yaml", copy.deepcopy(tiny_trial_tree),
                      search={"scheduler": {"name": "asha"}, "metrics": {"val/acc": "max", "train/loss": "min"}})
    assert main(["run", str(spec), "--storage", str(tmp_path)]) == 2
    assert "asha" in capsys.readouterr().err


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_smoke_test_shrinks_every_shipped_spec_to_two_short_trials(path, tmp_path):
    plan = plan_search(load_spec(path), storage=str(tmp_path), smoke=True)
    assert plan.n_trials == 2
    runtime = plan.runtime()
    for cell in plan.cells:
        extra = {p: args[0] for p, (kind, args) in plan.sampled.items()}
        cfg = resolve_trial(runtime, {**cell, **extra})
        assert cfg.train.epochs == 1 and cfg.train.steps_per_epoch <= 5
        assert cfg.data.train_subset <= 512 and cfg.data.test_subset <= 256 and cfg.eval.n_images <= 8


def test_optuna_space_assigns_cells_round_robin_and_samples_the_rest():
    cells = [{"arm": a, "train.seed": s} for a in ("ce", "lico") for s in (0, 1)]
    space = OptunaCells({"lico.ot.epsilon": ("loguniform", [0.01, 1.0]), "text.n_ctx": ("randint", [4, 9])}, cells)
    study = optuna.create_study()
    got = []
    for _ in range(6):
        trial = study.ask()
        params = space(trial)
        assert 0.01 <= trial.params["lico.ot.epsilon"] <= 1.0 and 4 <= trial.params["text.n_ctx"] <= 8
        assert trial.user_attrs == {**params, "cell": params}
        got.append(params)
    assert got == cells + cells[:2]


def test_the_study_of_an_experiment_on_cloud_storage_is_one_file_on_the_driver(tiny_trial_tree, tmp_path,
                                                                              monkeypatch):
    """One place for its path (layout.driver_study_file): the plan's URL, the searcher's file and
    resume (run.bring_back_study) all read Plan.study_on_driver; local or named storage: none."""
    from lico_tune import layout
    monkeypatch.setattr(layout, "CACHE_DIR", tmp_path / "cache")        # the searcher creates the SQLite file
    search = {"algorithm": "optuna", "num_samples": 2, "space": {"lico.alpha": {"loguniform": [0.1, 10.0]}}}
    cloud = plan_search(spec_of(tiny_trial_tree, search=search), name="x", storage="s3://bucket/root")
    assert cloud.study_on_driver == tmp_path / "cache" / "optuna" / "x.db"
    assert cloud.optuna_url == f"sqlite:///{tmp_path / 'cache' / 'optuna' / 'x.db'}"
    alg = search_algorithm(cloud)[0].searcher          # inside its generator (tune/generator.py)
    assert alg.lico_study_file == str(cloud.study_on_driver) and cloud.study_on_driver.is_file()
    local = plan_search(spec_of(tiny_trial_tree, search=search), name="x", storage=str(tmp_path / "res"))
    assert local.study_on_driver is None and local.optuna_url == f"sqlite:///{tmp_path / 'res' / 'x' / 'optuna.db'}"
    named = plan_search(spec_of(tiny_trial_tree, search={**search, "optuna_storage": "sqlite:////tmp/o.db"}),
                        name="x", storage="s3://bucket/root")
    assert named.study_on_driver is None and named.optuna_url == "sqlite:////tmp/o.db"


def test_error_reason_is_the_exception_line():
    text = ("Failure # 1\nray::ImplicitFunc.train() (pid=1)\n  File \"x.py\", line 3\n"
            "lico_tune.train.TrialDiverged: Loss became nan at epoch 2, step 1 (ce 2.3); the trial stopped")
    assert error_reason(text).startswith("lico_tune.train.TrialDiverged: Loss became nan at epoch 2")


def test_ray_cluster_yaml_passes_rays_validator():
    from ray.autoscaler._private.util import prepare_config, validate_config
    cfg = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)      # what `ray up` runs first; raises on any schema error
    workers = [t for name, t in cfg["available_node_types"].items() if name != cfg["head_node_type"]]
    assert workers and all(t["min_workers"] == 0 for t in workers), "GPU workers must autoscale from zero"
    assert all(t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for t in workers)
    assert any("lico-tune" in cmd for cmd in prepared["setup_commands"])


# ----------------------------------------------------------------------------- real sweeps


def test_optuna_two_metric_study_lives_in_sqlite_and_loads(ray_tmp, tmp_path, tiny_trial_tree):
    spec = write_spec(tmp_path / "opt.yaml", copy.deepcopy(tiny_trial_tree), search={
        "algorithm": "optuna", "num_samples": 1,
        "space": {"lico.ot.epsilon": {"loguniform": [0.05, 1.0]}, "train.seed": {"grid": [0, 1]}},
        "allow_inert": ["lico.ot.epsilon"],     # one text point per class (eot): the study's mechanics, not epsilon
        "metrics": {"val/acc": "max", "train/loss": "min"}})
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res"), "--name", "opt"], ray_tmp, timeout=240)
    assert out.returncode == 0, out.stdout[-5000:]
    assert "Pareto front (val/acc max, train/loss min)" in out.stdout
    db = tmp_path / "res" / "opt" / "optuna.db"
    study = optuna.load_study(study_name="opt", storage=f"sqlite:///{db}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val/acc", "train/loss"], "optuna-dashboard labels the objectives with these"
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert all(0.05 <= t.params["lico.ot.epsilon"] <= 1.0 for t in study.trials)
    assert sorted(t.user_attrs["train.seed"] for t in study.trials) == [0, 1], "seeds are crossed"
    # Each Optuna trial links back to its Ray trial directory (trial_<id>...) and its cell.
    from lico_tune.layout import trial_dirname
    assert {trial_dirname(t.user_attrs["ray_trial_id"], None) for t in study.trials} == \
        {d.name for d in trial_dirs(tmp_path / "res" / "opt")}
    assert all(t.user_attrs["cell"] == {"train.seed": t.user_attrs["train.seed"]} for t in study.trials)
    assert study.best_trials, "no Pareto front"
    # The trials ran the values Optuna proposed.
    ran = sorted(yaml.safe_load((t / "trial_spec.yaml").read_text())["lico"]["ot"]["epsilon"]
                 for t in trial_dirs(tmp_path / "res" / "opt"))
    assert ran == pytest.approx(sorted(t.params["lico.ot.epsilon"] for t in study.trials))


def test_failed_trial_is_reported_and_retried_from_its_last_checkpoint(ray_tmp, tmp_path, tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["lico"] = {"alpha": 0.0, "beta": 0.0}
    tree["train"].update(epochs=2, steps_per_epoch=4)
    # 'permanent' diverges at its first step (no checkpoint yet, so every attempt fails);
    # 'transient' diverges at step 5 (epoch 2), after epoch 1's checkpoint.
    spec = write_spec(tmp_path / "fail.yaml", tree, search={"max_failures": 1},
                      ablation={"permanent": {"train.fail_at_step": 0}, "transient": {"train.fail_at_step": 5}})
    # Storage given as a URI (file://), as for s3:// or gs://: Tune, its checkpoints (the retry restores
    # one) and our files go through pyarrow.
    out = lico_tune(["run", str(spec), "--storage", f"file://{tmp_path / 'res'}", "--name", "fail"], ray_tmp,
                    timeout=240)
    assert out.returncode == 1, out.stdout[-5000:]   # a trial failed: exit 1, but the sweep finished
    assert "2 trials, 1 finished, 1 errored" in out.stdout
    # Each retry line says why the trial failed and which retry this is.
    assert re.search(r"retry +\w+_\d+ arm transient  lico_tune.train.TrialDiverged: Loss became nan .*; retry 1 of 1,",
                     out.stdout), out.stdout[-3000:]
    assert ("(arm permanent, dataset digits): lico_tune.train.TrialDiverged: Loss became nan at epoch 1, "
            "step 1") in out.stdout
    (permanent,) = [t for t in trial_dirs(tmp_path / "res" / "fail") if t.name.endswith("_permanent")]
    (transient,) = [t for t in trial_dirs(tmp_path / "res" / "fail") if t.name.endswith("_transient")]
    assert "Failure # 2" in (permanent / "error.txt").read_text(), "max_failures=1 means one retry"
    assert "Failure # 1" in (transient / "error.txt").read_text()
    log = (transient / "train.log").read_text()
    assert "restored from Tune checkpoint" in log and "checkpoint_000000" in log and "after epoch 1" in log
    rows = result_rows(transient)
    assert [r["epoch"] for r in rows] == [1, 2], "the retry must continue at epoch 2, not start over"
    assert rows[-1]["step"] == 8
    # Ray fixes progress.csv's header at the first report: the saliency columns are there from
    # epoch 1 (empty: computed at the last epoch only), with their values in the last row.
    import pandas as pd
    progress = pd.read_csv(transient / "progress.csv")
    assert list(progress["epoch"]) == [1, 2]
    for col in ("saliency/gradcam/insertion", "saliency/gradcam/overall", "saliency/gradcam/seconds"):
        assert col in progress.columns and pd.isna(progress[col].iloc[0]) and progress[col].iloc[1] > 0


def test_run_summary_statistics_match_a_hand_worked_case():
    """The end-of-run summary's mean ± sd per arm and dataset and its Pareto front (both from
    results.stats) on rows worked out by hand."""
    from lico_tune.tune.summary import _front, _per_group
    rows = [{"trial_id": "a1", "arm": "lico", "dataset": "digits", "test/acc": 80.0, "train/loss": 0.5},
            {"trial_id": "a2", "arm": "lico", "dataset": "digits", "test/acc": 90.0, "train/loss": 0.7},
            {"trial_id": "b1", "arm": None, "dataset": "digits", "test/acc": 70.0, "train/loss": 0.4},
            {"trial_id": "c1", "arm": "ce", "dataset": "digits", "test/acc": 75.0, "train/loss": 0.9}]
    lines = _per_group(rows, ["test/acc", "train/loss"])
    # lico: mean 85, sd sqrt(((80-85)^2 + (90-85)^2) / 1) = 7.07; one trial: sd 0.
    assert lines == ["  arm -            digits         n=1  test/acc 70.00 ± 0.00, train/loss 0.4 ± 0",
                     "  arm ce           digits         n=1  test/acc 75.00 ± 0.00, train/loss 0.9 ± 0",
                     "  arm lico         digits         n=2  test/acc 85.00 ± 7.07, train/loss 0.6 ± 0.141"]
    # max acc, min loss: c1 (75, 0.9) is dominated by a1 (80, 0.5); the others trade off.
    assert [r["trial_id"] for r in _front(rows, {"test/acc": "max", "train/loss": "min"})] == ["a1", "a2", "b1"]


def test_validate_makes_the_search_checks_of_run(tmp_path, capsys):
    """`lico-tune validate` plans the sweep too (lico_tune.plan, no Ray): a sampled distribution
    under the grid algorithm is refused there, not only when `run` starts."""
    from lico_tune.cli import main
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "base": {}, "search": {
        "algorithm": "grid", "space": {"lico.alpha": {"uniform": [0, 1]}}}}))
    assert main(["validate", str(bad)]) == 2
    assert "search.space.lico.alpha: 'uniform' needs a sampling algorithm" in capsys.readouterr().err
    assert main(["validate", str(REPO / "search_spaces" / "quickstart.yaml")]) == 0


def test_asha_and_optuna_skip_the_nan_padding_of_a_first_report():
    """A trial's first report holds NaN for the metrics it computes later (progress.csv's columns);
    ASHA and Optuna must not take that NaN for a value; a trial the searcher never handed out
    (a resume from pieces of two saves: tune/generator.py) is ignored, not a KeyError."""
    from ray.tune.schedulers import TrialScheduler
    from lico_tune.tune.searchers import LicoASHA, LicoOptunaSearch

    asha = LicoASHA(time_attr="epoch", metric="test/acc", mode="max", max_t=4, grace_period=1)
    assert asha.on_trial_result(None, object(), {"epoch": 1, "test/acc": float("nan")}) == TrialScheduler.CONTINUE
    import optuna
    search = LicoOptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1)},
                              metric="saliency/gradcam/overall", mode="max")
    search.suggest("t")
    search.on_trial_result("t", {"epoch": 1, "training_iteration": 1, "saliency/gradcam/overall": float("nan")})
    reported = lambda: search._ot_study.get_trials(deepcopy=False)[0].intermediate_values  # noqa: E731
    assert reported() == {}
    search.on_trial_result("t", {"epoch": 2, "training_iteration": 2, "saliency/gradcam/overall": 0.3})
    assert reported() == {2: 0.3}, "a real value goes through to Optuna"
    search.on_trial_result("never-suggested", {"epoch": 2, "training_iteration": 2, "saliency/gradcam/overall": 0.3})
    search.on_trial_complete("never-suggested", {"saliency/gradcam/overall": 0.3})   # unknown: ignored
