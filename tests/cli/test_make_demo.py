"""The newcomer path (issue 15): `make demo`'s script twice in one fresh results root (smoke
budget), `--set` on a searched field (applied to every trial, with a note), timestamped
`lico-tune train` runs and `--resume` of the newest, `report --experiment latest`. The first demo
run is also the test of `lico-tune run --smoke-test` on the quick start (its progress lines, trial
files and summary)."""
import json
import os
import re
import subprocess
import sys

import yaml
from ray_helpers import REPO, ray_env, result_rows, trial_dirs, write_spec

from lico_tune.cli import main
from lico_tune.layout import newest_stamped
from lico_tune.plan import plan_search
from lico_tune.spec import load_spec
from lico_tune.plan.resolve import resolve_trial

QUICKSTART = str(REPO / "search_spaces" / "quickstart.yaml")
PNG = b"\x89PNG\r\n\x1a\n"


def demo(storage, tmpdir, extra=""):
    """scripts/demo.sh as `make demo` runs it, with the smoke budget and this checkout's code."""
    env = ray_env(tmpdir, LICO_TUNE=f"{sys.executable} -m lico_tune.cli", STORAGE=str(storage),
                  DEMO_ARGS=f"--smoke-test --set train.threads=1 {extra}")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, start_new_session=True)
    return proc.returncode, proc.stdout


def check_quickstart_smoke_sweep(out: str, experiment) -> None:
    """`lico-tune run quickstart.yaml --smoke-test`: one line per trial event (not Ray's table), the
    summary, each trial's files clamped to the smoke budget, summary.json and the run file."""
    assert "| Trial name" not in out and "Trial status:" not in out, "Ray's table without --verbose"
    lines = out.splitlines()
    for event in ("start", "epoch 1", "done"):
        hits = [ln for ln in lines if ln[9:].startswith(event)]
        assert len(hits) == 2 and {h.split(" arm ")[1].split()[0] for h in hits} == {"ce", "lico"}, (event, hits)
    assert all(" acc " in ln for ln in lines if ln[9:].startswith("done")), "the finish line shows test/acc"
    assert f"== Summary of {experiment.name}: 2 trials, 2 finished, 0 errored ==" in out
    trials = trial_dirs(experiment)
    assert len(trials) == 2
    for trial in trials:
        spec = yaml.safe_load((trial / "trial_spec.yaml").read_text())
        assert spec["train"]["epochs"] == 1 and spec["train"]["steps_per_epoch"] == 5
        assert spec["data"]["train_subset"] == 512
        prov = json.loads((trial / "provenance.json").read_text())
        assert prov["lico_tune_version"] and "git_sha" in prov and prov["arm"] in ("ce", "lico")
        rows = result_rows(trial)
        assert [r["epoch"] for r in rows] == [1] and rows[0]["arm"] == prov["arm"]
        assert rows[0]["dataset"] == "fashion_mnist" and "history" not in rows[0]
        ckpts = sorted(trial.glob("checkpoint_*"))
        assert ckpts and (ckpts[-1] / "checkpoint.pt").exists() and (ckpts[-1] / "trial_spec.yaml").exists()
    import pandas as pd
    summary = pd.read_json(experiment / "summary.json")    # records: one row per trial
    assert sorted(summary["arm"]) == ["ce", "lico"] and set(summary["experiment"]) == {experiment.name}
    assert summary["test/acc"].between(0, 100).all()
    assert (experiment / "lico_run.yaml").exists()


def test_make_demo_runs_twice_keeps_both_experiments_and_ends_with_a_report_and_a_figure(ray_tmp, tmp_path, capsys):
    storage = tmp_path / "results"
    rc1, out1 = demo(storage, ray_tmp)
    assert rc1 == 0, out1[-6000:]
    # The second run overrides a searched field: the seed axis [0, 1] is replaced, and said so.
    rc2, out2 = demo(storage, ray_tmp, extra="--set train.seed=7")
    assert rc2 == 0, out2[-6000:]
    assert "note: --set train.seed=7 replaces the grid [0, 1] of search.space.train.seed" in out2
    assert "note:" not in out1

    experiments = sorted(p for p in storage.iterdir() if p.is_dir() and p.name.startswith("quickstart_"))
    assert len(experiments) == 2, [p.name for p in storage.iterdir()]
    first, second = experiments
    check_quickstart_smoke_sweep(out1[:out1.index("== 2/3")], first)
    for exp, out in ((first, out1), (second, out2)):
        assert re.fullmatch(r"quickstart_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-smoke", exp.name)
        trials = trial_dirs(exp)
        assert sorted(t.name.rsplit("_", 1)[-1] for t in trials) == ["ce", "lico"]
        # The report: the ablation table names both arms; the health summary has the LICO arm's row.
        report = out[out.index("== 2/3"):out.index("== 3/3")]
        table = report[report.index("### Ablation table"):report.index("### Paired")]
        assert re.search(r"^\| ce \|", table, re.M) and re.search(r"^\| lico \|", table, re.M), table
        health = report[report.index("### Health of the LICO terms"):]
        lico_row = next(line for line in health.splitlines() if line.startswith("| lico |"))
        ce_row = next(line for line in health.splitlines() if line.startswith("| ce |"))
        # Every arm reports whether it learned anything (at chance / collapsed): CE's warnings column
        # counts them ('none' or e.g. 'at chance 1/1'), its LICO gradient shares stay '-'.
        assert lico_row.split("|")[-2].strip() != "-" and ce_row.split("|")[-2].strip() != "-"
        assert ce_row.split("|")[-3].strip() == "-" and lico_row.split("|")[-3].strip() != "-"
        # The explain figure of the best (here: the only) finished LICO trial.
        lico_trial = next(t for t in trials if t.name.endswith("_lico"))
        assert f"explaining the best lico trial of {exp.name}: {lico_trial.name}" in out
        assert "the highest of 1 finished lico trial(s)" in out
        figure = exp / "best_lico_explain.png"
        assert figure.read_bytes()[:8] == PNG and f"wrote {figure}" in out
        assert "make dashboard" in out and "--experiment latest" in out and "make train" in out
    for trial in trial_dirs(first):
        assert yaml.safe_load((trial / "trial_spec.yaml").read_text())["train"]["seed"] == 0
    for trial in trial_dirs(second):
        assert yaml.safe_load((trial / "trial_spec.yaml").read_text())["train"]["seed"] == 7

    # `--experiment latest` is the second run.
    assert main(["report", str(storage), "--experiment", "latest", "--no-catalog"]) == 0
    cap = capsys.readouterr()
    assert f"latest experiment of {storage}: {second.name}" in cap.err
    assert f"## {second.name}" in cap.out and first.name not in cap.out


def test_set_on_a_searched_field_replaces_the_axis_and_arms_still_win(capsys, tmp_path):
    notices = []
    spec = load_spec(QUICKSTART, ["train.seed=5", "lico.alpha=4"], notices)
    assert notices == [
        "--set train.seed=5 replaces the grid [0, 1] of search.space.train.seed: every trial uses the override "
        "(the axis is removed)",
        "--set lico.alpha=4 is overridden by arm ce's lico.alpha=0 in a sweep (arms win over the base)"]
    plan = plan_search(spec, name="x", storage=str(tmp_path))
    assert "train.seed" not in plan.grid and len(plan.cells) == 2 * 2      # arms x datasets
    for cell in plan.cells:
        cfg = resolve_trial(plan.runtime(), cell)
        assert cfg.train.seed == 5
        assert cfg.lico.alpha == (0 if cell["arm"] == "ce" else 4)
    # The base prefix and a whole section count too; unrelated overrides say nothing.
    notices = []
    load_spec(QUICKSTART, ["base.data={name: digits}", "train.epochs=1"], notices)
    assert notices == ["--set base.data={name: digits} replaces the grid [fashion_mnist, digits] of "
                       "search.space.data.name: every trial uses the override (the axis is removed)"]
    # validate, train and run print the notes (run: before anything starts; here it is refused later).
    assert main(["validate", QUICKSTART, "--set", "data.name=digits"]) == 0
    err = capsys.readouterr().err
    assert "note: --set data.name=digits replaces the grid [fashion_mnist, digits]" in err


def test_quickstart_fixed_values_live_in_its_base():
    spec = load_spec(QUICKSTART)
    assert all(len(next(iter(d.values()))) > 1 for d in spec.search.space.values()), spec.search.space
    assert (spec.base.data.train_subset, spec.base.data.test_subset) == (16384, 2000)
    assert load_spec(QUICKSTART, ["data.train_subset=4000"]).base.data.train_subset == 4000


def test_train_without_out_writes_a_new_stamped_run_and_resume_picks_the_newest(tiny_trial_tree, tmp_path,
                                                                                 monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "tiny.yaml", tiny_trial_tree, name="tiny")
    # Two earlier runs (the older unstamped layout and a stamped one) that resume must not pick.
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    (tmp_path / "runs" / "tiny_2020-01-01_00-00-00").mkdir()
    (tmp_path / "runs" / "tiny_big_2099-01-01_00-00-00").mkdir()        # another spec's run
    assert main(["train", str(spec), "--quiet"]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    new = [r for r in runs if r not in ("tiny", "tiny_2020-01-01_00-00-00", "tiny_big_2099-01-01_00-00-00")]
    assert len(new) == 1 and re.fullmatch(r"tiny_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", new[0])
    assert (tmp_path / "runs" / new[0] / "checkpoint.pt").is_file()
    capsys.readouterr()
    assert main(["train", str(spec), "--quiet", "--resume", "--set", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {os.path.join('runs', new[0])} (the newest run of tiny" in out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == runs      # no new directory
    assert newest_stamped(tmp_path / "runs", "tiny").name == new[0]


def test_resume_without_out_and_without_runs_is_refused(tiny_trial_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "tiny.yaml", tiny_trial_tree, name="tiny")
    assert main(["train", str(spec), "--resume"]) == 2
    assert "no run of 'tiny' under runs/ to continue" in capsys.readouterr().err


def _fake_experiment(root, name, created, trials, metrics):
    """An experiment directory as lico-tune run leaves it, reduced to what the results readers use:
    lico_run.yaml and, per trial, result.json (one epoch), trial_spec.yaml and a checkpoint folder."""
    import json
    exp = root / name
    exp.mkdir(parents=True)
    (exp / "lico_run.yaml").write_text(yaml.safe_dump(
        {"experiment": name, "created": created, "arms": {"ce": {}, "lico": {}},
         "spec": {"search": {"metrics": metrics}}}))
    for i, (arm, dataset, values) in enumerate(trials):
        t = exp / f"trial_abcde_{i:05d}_{arm}"
        (t / "checkpoint_000000").mkdir(parents=True)
        (t / "checkpoint_000000" / "checkpoint.pt").write_bytes(b"")
        (t / "trial_spec.yaml").write_text(yaml.safe_dump({"train": {"epochs": 1, "seed": i}, "data": {"name": dataset}}))
        (t / "result.json").write_text(json.dumps({"epoch": 1, "arm": arm, "dataset": dataset, **values}) + "\n")
    return exp


def test_best_trial_of_an_arm_and_the_latest_experiment(tmp_path):
    from lico_tune.results.pick import best_trial, experiment_dir
    old = _fake_experiment(tmp_path, "zzz_old", "2026-01-01T00:00:00", [("lico", "digits", {"test/acc": 99.0})],
                           {"test/acc": "max"})
    new = _fake_experiment(tmp_path, "aaa_new", "2026-02-01T00:00:00", [
        ("ce", "fashion_mnist", {"test/acc": 90.0, "train/loss": 0.1}),
        ("lico", "fashion_mnist", {"test/acc": 50.0, "train/loss": 0.5}),
        ("lico", "fashion_mnist", {"test/acc": 70.0, "train/loss": 0.9}),
        ("lico", "digits", {"test/acc": 95.0, "train/loss": 0.2}),
        ("lico", "fashion_mnist", {"train/loss": 0.3})], {"test/acc": "max"})
    assert experiment_dir(str(tmp_path)) == str(new)            # by creation time, not by name
    b = best_trial(str(tmp_path), arm="lico", dataset="fashion_mnist")
    assert (b.trial_dir, b.value, b.n_candidates) == ("trial_abcde_00002_lico", 70.0, 2)
    assert b.checkpoint == str(new / "trial_abcde_00002_lico" / "checkpoint_000000" / "checkpoint.pt")
    assert "the highest of 2 finished lico trial(s)" in b.reason()
    assert best_trial(str(new), arm="lico").trial_dir == "trial_abcde_00003_lico"
    assert best_trial(str(old), arm="lico").value == 99.0
    # A minimised first metric picks the lowest value.
    mini = _fake_experiment(tmp_path / "m", "mini", "2026-03-01T00:00:00", [
        ("lico", "digits", {"train/loss": 0.4}), ("lico", "digits", {"train/loss": 0.2})], {"train/loss": "min"})
    b = best_trial(str(mini), arm="lico")
    assert (b.trial_dir, b.mode) == ("trial_abcde_00001_lico", "min") and "the lowest" in b.reason()
    import pytest
    with pytest.raises(KeyError, match="no arm 'mm'; its arms: ce, lico"):
        best_trial(str(new), arm="mm")
    assert main(["explain", str(tmp_path / "nowhere"), "--arm", "lico"]) == 2
