"""A resumed sweep agrees with the trials Ray restored (tune/generator.py): pieces of two saves
(the searcher's newer than the trials' snapshot, or older) neither lose a planned trial nor repeat one.
The searcher stacks are Ray's and Optuna's own objects, built as search_algorithm builds them."""
from __future__ import annotations

import optuna
import pytest
from ray.tune.search import ConcurrencyLimiter

from lico_tune.keys import TRIAL_INDEX
import ray

from lico_tune.tune.generator import NEVER_RUN, TESTED_RAY, LicoSearchGenerator, LicoVariantGenerator, agree_or_warn
from lico_tune.tune.repeater import SeedRepeater
from lico_tune.tune.searchers import LicoOptunaSearch, OptunaCells

CELLS = [{"arm": "ce"}, {"arm": "mm"}, {"arm": "lico"}]


def optuna_stack(tmp_path, repeats: int = 1, max_concurrent: int = 0):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    base = LicoOptunaSearch(space=OptunaCells({"lico.alpha": ("uniform", [0.1, 1.0])}, CELLS), metric="val/acc",
                            mode="max", sampler=optuna.samplers.TPESampler(seed=0), study_name="s", storage=storage)
    alg = SeedRepeater(base, repeats, ["val/acc"], ["max"]) if repeats > 1 else base
    if max_concurrent:
        alg = ConcurrencyLimiter(alg, max_concurrent=max_concurrent)
    gen = LicoSearchGenerator(alg)
    gen._total_samples = 6
    return gen, base


def suggest(gen, n: int) -> list[tuple[str, dict]]:
    out = []
    for i in range(n):
        trial_id = f"t{gen._counter}"
        config = gen.searcher.suggest(trial_id)
        assert isinstance(config, dict), config
        gen._counter += 1
        out.append((trial_id, config))
    return out


def snapshot(trials) -> dict[str, dict]:
    return {trial_id: {"config": config, "status": "RUNNING"} for trial_id, config in trials}


@pytest.mark.parametrize("max_concurrent", [0, 4])
def test_trials_handed_out_after_the_snapshot_are_created_again_with_their_cells(tmp_path, max_concurrent):
    gen, base = optuna_stack(tmp_path, max_concurrent=max_concurrent)
    made = suggest(gen, 4)
    assert [c["arm"] for _, c in made] == ["ce", "mm", "lico", "ce"]
    gen.agree_with(snapshot(made[:2]))          # the snapshot was saved after the 2nd trial
    assert gen._counter == 2 and not gen.is_finished()
    if max_concurrent:
        assert gen.searcher.live_trials == {"t0", "t1"}, "the lost trials still hold concurrency slots"
    assert set(base._ot_trials) == {"t0", "t1"}
    study = base._ot_study
    never = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("lico_tune") == NEVER_RUN]
    assert sorted(t.number for t in never) == [2, 3]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in never)
    gen.on_trial_complete("t0", {"val/acc": 80.0})      # the trials that ran are told as before
    gen.on_trial_complete("t1", {"val/acc": 81.0})
    assert [t.values for t in study.get_trials(deepcopy=False)[:2]] == [[80.0], [81.0]]
    again = suggest(gen, 4)                     # the lost cells come first, then the round-robin goes on
    assert [c["arm"] for _, c in again] == ["lico", "ce", "mm", "lico"]
    assert gen._counter == 6 and gen.is_finished()


def test_snapshot_trials_the_searcher_never_handed_out_count_and_are_not_told(tmp_path):
    gen, base = optuna_stack(tmp_path, max_concurrent=4)
    made = suggest(gen, 2)
    later = [("t2", {"arm": "lico", "lico.alpha": 0.5}), ("t3", {"arm": "ce", "lico.alpha": 0.4})]
    gen.agree_with(snapshot(made + later))      # the searcher's piece is the older one
    assert gen._counter == 4
    assert base._space.assigned == 4, "the cells must move past the trials the snapshot holds"
    gen.on_trial_complete("t2", {"val/acc": 70.0})      # unknown to the searcher: ignored, no KeyError
    gen.searcher.searcher.on_trial_complete("t3", {"val/acc": 70.0})
    assert [c["arm"] for _, c in suggest(gen, 1)] == ["mm"]


def test_a_repeat_group_cut_by_the_snapshot_is_refilled_with_the_same_configuration(tmp_path):
    gen, base = optuna_stack(tmp_path, repeats=2)
    made = suggest(gen, 3)                      # group 1: t0, t1 (ce); group 2: t2 (mm)
    assert [c[TRIAL_INDEX] for _, c in made] == [0, 1, 0]
    gen.agree_with(snapshot(made[:1]))          # only t0 made it
    assert gen._counter == 1
    repeater = gen.searcher
    assert len(repeater._groups) == 1, "the empty group (t2's proposal) is dropped"
    never = [t.number for t in base._ot_study.get_trials(deepcopy=False) if t.user_attrs.get("lico_tune") == NEVER_RUN]
    assert never == [1]
    (tid, config), = suggest(gen, 1)
    assert config[TRIAL_INDEX] == 1 and config["lico.alpha"] == made[0][1]["lico.alpha"], \
        "the cut group must get its missing repeat, with the same configuration"
    nxt = suggest(gen, 1)[0][1]
    assert nxt[TRIAL_INDEX] == 0 and nxt["arm"] == "mm", "the dropped proposal's cell comes back next"
    # the group's objective is told once both repeats end
    gen.on_trial_complete("t0", {"val/acc": 80.0})
    gen.on_trial_complete(tid, {"val/acc": 82.0})
    assert base._ot_study.get_trials(deepcopy=False)[0].values == [81.0]


def test_a_consistent_state_is_left_as_it_was(tmp_path):
    gen, base = optuna_stack(tmp_path, max_concurrent=2)
    made = suggest(gen, 2)
    before = (gen._counter, set(gen.searcher.live_trials), set(base._ot_trials), base._space.assigned)
    gen.agree_with(snapshot(made))
    assert (gen._counter, set(gen.searcher.live_trials), set(base._ot_trials), base._space.assigned) == before


@pytest.mark.parametrize("algorithm", ["optuna", "grid"])
def test_a_resumed_sweep_whose_snapshot_is_older_than_its_searcher_runs_every_planned_trial(
        ray_tmp, tmp_path, tiny_trial_tree, algorithm):
    """Under Ray: an Optuna sweep killed (-9) once two trials finished; its newest trials' snapshot is then
    made the older piece (the trials Ray created after it taken out, as when the upload of the snapshot was
    cut), while the searcher's state still counts them. `resume` must end with all 4 planned trials."""
    import json
    import os
    import pickle
    import signal
    import subprocess
    import sys
    import time

    from ray_helpers import REPO, kill_started, lico_tune, ray_env, write_spec
    from test_resume import trial_statuses

    tree = tiny_trial_tree
    tree["train"].update(epochs=2, steps_per_epoch=2)
    search = {"algorithm": "optuna", "num_samples": 4, "space": {"lico.alpha": {"uniform": [0.1, 1.0]}}} \
        if algorithm == "optuna" else {"space": {"train.seed": {"grid": [0, 1, 2, 3]}}}
    spec = write_spec(tmp_path / "o.yaml", tree, search={**search, "max_concurrent": 1, "metrics": {"val/acc": "max"}})
    experiment = tmp_path / "res" / "o"
    driver = subprocess.Popen([sys.executable, "-m", "lico_tune.cli", "run", str(spec), "--storage",
                               str(tmp_path / "res"), "--name", "o"], cwd=REPO, env=ray_env(ray_tmp),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while list(trial_statuses(experiment).values()).count("TERMINATED") < 2 if experiment.exists() else True:
            assert driver.poll() is None and time.time() < deadline, "two trials did not finish"
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    assert not kill_started([ray_tmp])
    state = max(experiment.glob("experiment_state-*.json"))
    data = json.loads(state.read_text())
    kept = [t for t in data["trial_data"] if json.loads(t[0])["status"] == "TERMINATED"]
    assert len(kept) == 2 and len(data["trial_data"]) >= 2
    state.write_text(json.dumps(dict(data, trial_data=kept)))
    if algorithm == "optuna":
        gen = pickle.loads(max(experiment.glob("search_gen_state-*.json")).read_bytes())   # Ray's (a pickle)
        assert gen["counter"] > 2, "the searcher's piece must count trials the snapshot lacks"
    assert lico_tune(["trust", str(experiment)], ray_tmp, timeout=120).returncode == 0

    out = lico_tune(["resume", str(experiment)], ray_tmp, timeout=400)
    assert out.returncode == 0, out.stdout[-5000:]
    assert "4 trials, 4 finished, 0 errored" in out.stdout, out.stdout[-3000:]
    assert "handed out after the snapshot are created again" in out.stdout, "the user is told what resume did"
    statuses = trial_statuses(experiment)
    assert len(statuses) == 4 and set(statuses.values()) == {"TERMINATED"}
    if algorithm != "optuna":
        return
    study = optuna.load_study(study_name="o", storage=f"sqlite:///{experiment / 'optuna.db'}")
    told = {t.user_attrs.get("ray_trial_id"): t.state for t in study.get_trials(deepcopy=False)}
    assert all(told.get(tid) == optuna.trial.TrialState.COMPLETE for tid in statuses), (told, statuses)
    assert all(t.user_attrs.get("lico_tune") == NEVER_RUN for t in study.get_trials(deepcopy=False)
               if t.state != optuna.trial.TrialState.COMPLETE)


def grid_generator(max_concurrent: int = 2) -> LicoVariantGenerator:
    from ray import tune
    from ray.tune.experiment import Experiment
    gen = LicoVariantGenerator(max_concurrent=max_concurrent, random_state=0)
    gen.add_configurations([Experiment("x", run=lambda config: None,
                                       config={"train.seed": tune.grid_search([0, 1, 2, 3])})])
    return gen


def drain(gen) -> list:
    """Ray's loop: take trials while the generator gives them, completing each one it gives."""
    out = []
    while not gen.is_finished():
        trial = gen.next_trial()
        if trial is None:
            break
        out.append(trial)
        gen.on_trial_complete(trial.trial_id)
    return out


def test_a_grid_resumed_from_an_older_snapshot_creates_the_lost_trials_again_first():
    gen = grid_generator()
    made = [gen.next_trial() for _ in range(2)]           # both slots taken
    assert gen.next_trial() is None
    gen.agree_with({made[0].trial_id: {"status": "RUNNING", "config": made[0].config}})
    assert gen._live_trials == {made[0].trial_id}, "the lost trial must free its slot"
    gen.on_trial_complete(made[0].trial_id)
    rest = drain(gen)
    assert [t.config["train.seed"] for t in rest] == [1, 2, 3], "the lost seed first, then the grid goes on"
    assert rest[0].trial_id not in {t.trial_id for t in made}, "a new id: the lost one's directory may hold a start"
    assert gen.is_finished()


def test_the_repair_runs_only_under_the_tested_ray_and_says_so_under_another(tmp_path, caplog):
    assert ray.__version__.startswith(TESTED_RAY + "."), "a new Ray: rerun this module, then move TESTED_RAY"
    for version, repaired in ((ray.__version__, True), (TESTED_RAY + ".9", True), ("2.59.0", False), ("3.60.0", False)):
        (tmp_path / version).mkdir()
        gen, base = optuna_stack(tmp_path / version)
        made = suggest(gen, 3)
        caplog.clear()
        agree_or_warn(gen, snapshot(made[:1]), version)
        assert gen._counter == (1 if repaired else 3), version
        assert set(base._ot_trials) == ({"t0"} if repaired else {"t0", "t1", "t2"})
        untouched = [r.getMessage() for r in caplog.records if "was not checked" in r.getMessage()]
        assert bool(untouched) != repaired, (version, untouched)
    assert f"tested with Ray {TESTED_RAY}.x and this is Ray 3.60.0" in untouched[0] and "docs/sweeps.md" in untouched[0]


def test_a_grid_resumed_from_a_newer_snapshot_does_not_create_its_trials_twice():
    gen = grid_generator(max_concurrent=0)
    first = gen.next_trial()
    later = {first.trial_id: {"status": "TERMINATED", "config": first.config},
             "x_00001": {"status": "RUNNING", "config": {"train.seed": 1}}}
    gen.agree_with(later)                                  # the snapshot knows a trial the generator's piece does not
    assert [t.config["train.seed"] for t in drain(gen)] == [2, 3]
    assert "x_00001" in gen._live_trials



def test_a_workers_exit_in_a_weakref_callback_prints_nothing_but_an_error_still_does(capsys):
    """Ray's SIGTERM of a trial's worker (SystemExit) raised inside a WeakSet's callback printed a
    'Traceback' into a resumed sweep's output; the trainable's hook keeps exits quiet, not errors."""
    import gc
    import sys
    import weakref

    from lico_tune.tune.trainable import exit_is_not_an_error

    class Thing:
        pass

    def raising(exc):
        def callback(_ref):
            raise exc
        return callback

    old = sys.unraisablehook
    sys.unraisablehook = exit_is_not_an_error
    try:
        for exc in (SystemExit(0), ValueError("a real error")):
            thing = Thing()
            ref = weakref.ref(thing, raising(exc))  # noqa: F841  (kept alive so its callback runs)
            del thing
            gc.collect()
    finally:
        sys.unraisablehook = old
    err = capsys.readouterr().err
    assert "SystemExit" not in err
    assert "ValueError: a real error" in err and "Traceback" in err


def test_ray_s_line_per_trial_without_results_is_dropped_around_the_restore(tmp_path, caplog):
    """Tuner.restore reads every trial's results and warns once per trial that has none (every
    pending trial: 100 lines at the resume of the language study's 120-trial grid). Around the restore
    (tune/restore.py) those lines are dropped; outside it Ray's warning stands."""
    import logging
    import shutil
    from pathlib import Path

    from ray.tune import ExperimentAnalysis

    from lico_tune.tune.restore import no_pending_trial_warnings

    repo = Path(__file__).resolve().parents[2]
    published = next((repo / "docs" / "study" / "results").glob("study-converged_*"))
    exp = tmp_path / published.name
    shutil.copytree(published, exp, ignore=shutil.ignore_patterns("checkpoint_*", "gallery", "events.*"))
    pending = sorted(exp.glob("trial_*"))[0]
    for name in ("result.json", "progress.csv"):
        (pending / name).unlink()
    with caplog.at_level(logging.WARNING):
        with no_pending_trial_warnings():
            ExperimentAnalysis(str(exp))
        assert "Failed to fetch metrics" not in caplog.text
        ExperimentAnalysis(str(exp))
    assert "Failed to fetch metrics for 1 trial(s)" in caplog.text
