"""Results layer: statistics checked by hand-worked examples and against scipy, the tidy table
against a direct reading of result.json files, reports in every format, damaged roots, and the
catalog (written by the Tune callback during a real sweep; rebuilt by `lico-tune index`)."""
import io
import json
import math
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lico_tune.cli import main
from lico_tune.results import (Catalog, build_report, load_results, paired_test, paired_vs_baseline,
                               param_importance, pareto_mask, render, t_interval)
from lico_tune.results.stats import bootstrap_interval, holm
from lico_tune.keys import health_text
from lico_tune.results import report_text as prose

# One definition of the session fixtures for every module (an import would make one per module).
pytest_plugins = ["results_fixtures"]

EXP = "ablation-smoke"


# ----------------------------------------------------------------------------- statistics, by hand


def test_t_interval_of_1_2_3_is_the_hand_worked_one():
    ci = t_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, t(0.975, 2) = 4.303, half-width 4.303 / sqrt(3) = 2.484
    assert (ci["mean"], ci["sd"], ci["n"]) == (2.0, 1.0, 3)
    assert ci["half_width"] == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    assert ci["half_width"] == pytest.approx(2.484, abs=1e-3)
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-4)
    one = t_interval([5.0])
    assert one["n"] == 1 and one["mean"] == 5.0 and math.isnan(one["half_width"]), "n=1 has no interval"


def test_bootstrap_below_the_coverage_guard_is_refused():
    # The percentile bootstrap of [1, 2, 3] was [min, max] = [1, 3] (a resample of three 1s has
    # probability 3.7% > 2.5%), a "95%" interval that covers ~72% at n = 3 (tests/results/test_stats.py).
    # Below BOOTSTRAP_MIN_N the report now gives the t interval and says why.
    ci = bootstrap_interval([1.0, 2.0, 3.0])
    assert ci["method"].startswith("t (bootstrap refused: n=3")
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-4)


def test_paired_test_hand_worked_and_against_scipy():
    # d = [2, 3, 4]: mean 3, sd 1, CI 3 +- 2.484, t = 3 / (1 / sqrt 3) = 5.196 with 2 df, p = 0.0351.
    r = paired_test([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])
    assert (r["n"], r["mean_diff"], r["sd_diff"]) == (3, 3.0, 1.0)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((3 - 2.4841, 3 + 2.4841), abs=1e-4)
    assert r["t"] == pytest.approx(5.1962, abs=1e-4) and r["p_t"] == pytest.approx(0.0351, abs=1e-4)
    assert r["test"] == "paired t-test (n=3)" and math.isnan(r["p_wilcoxon"])
    assert "Wilcoxon not run: n=3 < 6" in r["note"]

    rng = np.random.default_rng(0)
    for n in (4, 7):
        base = rng.normal(90, 1, n)
        arm = base + rng.normal(0.5, 0.7, n)
        r = paired_test(arm, base)
        ref = sps.ttest_rel(arm, base)
        assert r["p_t"] == pytest.approx(ref.pvalue, rel=1e-12) and r["t"] == pytest.approx(ref.statistic)
        d = arm - base
        half = sps.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
        if n >= 6:
            assert r["p_wilcoxon"] == pytest.approx(sps.wilcoxon(arm, base).pvalue)
            assert "Wilcoxon signed-rank (n=7)" in r["test"]
        else:
            assert math.isnan(r["p_wilcoxon"])


def test_holm_adjustment_hand_worked():
    # sorted p: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([float("nan"), 0.2]) == [pytest.approx(float("nan"), nan_ok=True), pytest.approx(0.2)]


def test_paired_vs_baseline_matches_seeds_within_each_dataset():
    t = pd.DataFrame({"experiment": "e", "dataset": ["a"] * 6 + ["b"] * 2,
                      "arm": ["ce", "ce", "ce", "lico", "lico", "lico", "ce", "lico"],
                      "seed": [0, 1, 2, 2, 1, 0, 0, 1], "acc": [1, 2, 3, 7, 5, 3, 1, 9]})
    p = paired_vs_baseline(t, ["acc"], "ce")
    a = p[p["dataset"] == "a"].iloc[0]
    assert a["n"] == 3 and a["mean_diff"] == 3.0 and a["seeds"] == [0, 1, 2]      # d = [2, 3, 4]
    b = p[p["dataset"] == "b"].iloc[0]
    assert b["n"] == 0 and "n < 2" in b["note"], "no shared seed in dataset b"


def test_pareto_mask_and_importance():
    df = pd.DataFrame({"acc": [90, 91, 89, 91, 88], "sal": [0.2, 0.1, 0.3, 0.1, 0.1]})
    assert pareto_mask(df, {"acc": "max", "sal": "max"}).tolist() == [True, True, True, True, False]
    assert pareto_mask(df, {"acc": "max", "sal": "min"}).tolist() == [False, True, False, True, False]

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"lr": rng.uniform(0.01, 0.1, 24), "wd": rng.uniform(0, 1, 24),
                      "arm": rng.choice(["a", "b"], 24)})
    x["acc"] = 100 * x["lr"] + rng.normal(0, 0.05, 24)
    imp = param_importance(x, ["lr", "wd", "arm"], "acc")
    assert imp.iloc[0]["param"] == "lr" and imp["importance"].sum() == pytest.approx(1.0)
    assert imp.iloc[0]["method"] == "fANOVA (optuna)"
    small = param_importance(x.head(3), ["lr", "wd"], "acc")          # too few for fANOVA
    assert small.iloc[0]["method"].startswith("eta squared")


# ----------------------------------------------------------------------------- the table


def direct_final(trial_dir: Path) -> dict:
    """The last reported value of each metric, read straight from result.json."""
    final = {}
    for line in (trial_dir / "result.json").read_text().splitlines():
        final.update({k: v for k, v in json.loads(line).items() if "/" in k and isinstance(v, (int, float))})
    return final


def test_table_equals_a_direct_reading_of_the_trials(results_root):
    res = load_results(results_root, use_catalog=False)
    t = res.trials
    assert len(t) == 12 and list(res.experiments["experiment"]) == [EXP]
    assert t["status"].value_counts().to_dict() == {"finished": 8, "errored": 4}
    assert set(res.params[EXP]) == {"data.name", "train.seed", "lico.ot.epsilon"}
    for col in ("experiment", "trial_id", "arm", "dataset", "seed", "status", "error", "gallery", "checkpoint"):
        assert col in t.columns
    for _, row in t.iterrows():
        d = results_root / EXP / row["trial_dir"]
        params = json.loads((d / "params.json").read_text())
        assert row["arm"] == params["arm"] and row["seed"] == params["train.seed"]
        assert row["lico.ot.epsilon"] == pytest.approx(params["lico.ot.epsilon"])
        assert row["dataset"] == params["data.name"]
        if row["status"] == "errored":
            assert row["arm"] == "broken" and "TrialDiverged: Loss became nan" in row["error"]
            assert not row["usable"]
            continue
        direct = direct_final(d)
        for m in ("test/acc", "test/acc_ema", "train/ce", "saliency/gradcam/overall"):
            assert row[m] == pytest.approx(direct[m]), (row["trial_dir"], m)
        rows = [json.loads(x) for x in (d / "result.json").read_text().splitlines()]
        assert row["best:test/acc"] == pytest.approx(max(r["test/acc"] for r in rows))
        assert row["best:train/ce"] == pytest.approx(min(r["train/ce"] for r in rows)), "losses: best is min"
        assert row["n_epochs"] == 2 and row["usable"] and not row["damaged"]
        # Health warnings (text, in result.json) reach the table; eot features: one text point a class.
        assert health_text(row["health"]) == (rows[-1].get("health/warnings") or "")
        assert any(w.kind == "OT degenerate" for w in row["health"]) == (row["arm"] == "lico"), row["health"]
        assert row["checkpoint"].endswith("checkpoint_000001")
    # The catalog gives the same table as the files.
    cat = load_results(results_root)
    assert cat.source.startswith("sqlite:///")
    cols = ["trial_id", "arm", "dataset", "seed", "status", "health", "test/acc", "saliency/gradcam/overall",
            "lico.ot.epsilon"]
    pd.testing.assert_frame_equal(cat.trials[cols].reset_index(drop=True), t[cols].reset_index(drop=True),
                                  check_dtype=False)


def test_report_numbers_equal_a_direct_computation(results_root, capsys):
    assert main(["report", str(results_root), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)["experiments"][0]
    assert data["experiment"] == EXP and data["baseline"] == "ce" and data["arms"] == ["ce", "lico"]
    assert data["status_counts"] == {"finished": 8, "errored": 4} and data["usable_trials"] == 8
    finals = {}
    for d in sorted((results_root / EXP).glob("trial_*")):
        p = json.loads((d / "params.json").read_text())
        if (d / "error.txt").exists():
            continue
        finals[(p["arm"], p["data.name"], p["train.seed"])] = direct_final(d)
    for cell in data["ablation"]:
        vals = [f[cell["metric"]] for (arm, ds, _), f in finals.items() if arm == cell["arm"] and ds == cell["dataset"]]
        assert len(vals) == cell["n"] == 2
        mean, sd = np.mean(vals), np.std(vals, ddof=1)
        half = sps.t.ppf(0.975, 1) * sd / math.sqrt(2)          # t(0.975, 1) = 12.706
        assert (cell["mean"], cell["sd"], cell["half_width"]) == pytest.approx((mean, sd, half))
    for r in data["paired"]:
        arm = [finals[(r["arm"], r["dataset"], s)][r["metric"]] for s in (0, 1)]
        base = [finals[("ce", r["dataset"], s)][r["metric"]] for s in (0, 1)]
        assert r["mean_diff"] == pytest.approx(np.mean(np.subtract(arm, base)))
        if r["p_t"] is not None:
            assert r["p_t"] == pytest.approx(sps.ttest_rel(arm, base).pvalue)
    assert {b["metric"] for b in data["best"]} == {"test/acc", "test/acc_ema", "saliency/gradcam/overall"}

    # Holm over the report's whole family (every arm x dataset x metric), as statsmodels computes it.
    from statsmodels.stats.multitest import multipletests
    p = [r["p_t"] for r in data["paired"] if r["p_t"] is not None]
    assert data["correction"] == {"method": "holm", "family": "report", "tests": len(p)} and len(p) >= 4
    assert [r["p_adj"] for r in data["paired"] if r["p_t"] is not None] == pytest.approx(
        list(multipletests(p, method="holm")[1]))
    # Bold only where the best arm's paired interval against ce excludes 0.
    for cell in data["ablation"]:
        if cell["bold"] and cell["arm"] != "ce":
            pair = next(r for r in data["paired"] if (r["arm"], r["dataset"], r["metric"]) ==
                        (cell["arm"], cell["dataset"], cell["metric"]))
            assert cell["best"] and pair["ci_low"] > 0
    # The Markdown table prints the same numbers, bold cells in bold, with the small-n warning and the MDE.
    assert main(["report", str(results_root), "--experiment", EXP]) == 0
    md = capsys.readouterr().out
    assert "### Ablation table" in md and "| arm | digits · test/acc |" in md
    for cell in data["ablation"]:
        if cell["metric"] == "test/acc" and cell["dataset"] == "digits":
            text = f"{cell['mean']:.2f} ± {cell['half_width']:.2f}" if not cell["clipped"] else \
                f"{cell['mean']:.2f} [{cell['ci_low']:.2f}, {cell['ci_high']:.2f}]"
            assert (f"**{text}**" in md) == cell["bold"] and text in md
    assert "Holm correction over every paired test of the report" in md
    assert "### Small-n warnings" in md and "df = 1 (n = 2 seeds)" in md
    assert "Minimal detectable effect (paired t, two-sided α = 0.05, power 80%" in md
    assert "### Paired differences against `ce`" in md and "lico − ce" in md
    assert "### Errored trials" in md and md.count("TrialDiverged") == 4


def test_report_formats(results_root, capsys):
    assert main(["report", str(results_root), "--format", "csv", "--metric", "test/acc"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(csv["table"]) == {"ablation", "paired", "best"}
    abl = csv[csv["table"] == "ablation"]
    assert len(abl) == 4 and set(abl["metric"]) == {"test/acc"} and abl["best"].sum() >= 2
    assert main(["report", str(results_root), "--format", "latex", "--ci", "bootstrap"]) == 0
    tex = capsys.readouterr().out
    assert tex.count(r"\begin{tabular}") == 3 and r"\toprule" in tex
    assert "BCa bootstrap" in tex and r"fashion\_mnist" in tex
    assert main(["report", str(results_root), "--format", "md", "--baseline", "lico", "--level", "0.9"]) == 0
    md = capsys.readouterr().out
    assert "ce − lico" in md and "90% CI" in md
    assert main(["report", str(results_root), "--correction", "bh", "--margin", "test/acc=50", "--metric",
                 "test/acc"]) == 0
    md = capsys.readouterr().out
    assert "p (Benjamini-Hochberg)" in md and "p (TOST)" in md and "(±50)" in md and "seeds for ± target" in md
    assert main(["report", str(results_root), "--margin", "test/acc=wide"]) == 2
    assert "METRIC=NUMBER" in capsys.readouterr().err
    assert main(["report", str(results_root), "--metric", "test/nope"]) == 2
    assert "no trial reported test/nope" in capsys.readouterr().err
    assert main(["report", str(results_root), "--experiment", "nope"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err


def test_report_of_a_missing_or_empty_root_says_what_to_do(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such results root" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--no-catalog"]) == 2
    assert "holds no Ray Tune experiment yet" in capsys.readouterr().err


def test_damaged_trials_are_listed_with_a_warning_and_the_rest_is_shown(damaged_root, capsys):
    root, cut, bare = damaged_root
    res = load_results(root)
    damaged = res.damaged.set_index("trial_dir")
    assert set(damaged.index) == {cut, bare}
    assert "result.json is truncated" in damaged.loc[cut, "warnings"] and not damaged.loc[cut, "usable"]
    assert "no checkpoint_* directory" in damaged.loc[bare, "warnings"] and damaged.loc[bare, "usable"]
    assert pd.isna(damaged.loc[bare, "checkpoint"])
    assert len(res.usable) == 7, "the truncated trial leaves the statistics; the rest stay"

    assert main(["report", str(root)]) == 0
    out = capsys.readouterr()
    assert "### Damaged trials" in out.out and cut in out.out and bare in out.out
    assert f"warning: {EXP}/{cut}: result.json is truncated" in out.err
    rep = build_report(res, EXP)[0]
    cut_row = res.trials.set_index("trial_dir").loc[cut]
    cell = rep.cell(cut_row["arm"], cut_row["dataset"], "test/acc")
    assert cell["n"] == 1 and "(n=1)" in rep.format_cell(cell, "test/acc")
    assert "use the 7 finished trials with intact results" in prose.caption(rep)


def test_catalog_written_by_the_sweep_equals_a_rebuild_by_lico_tune_index(results_root, tmp_path, capsys):
    # The Tune callback left the catalog at the root during the sweep (copied before any test synced it).
    assert (results_root / "lico-tune.db").exists()
    live = Catalog(results_root, f"sqlite:///{results_root.parent / 'catalog_after_sweep.db'}", create=False)
    keys = ["trial_id", "arm", "dataset", "seed", "status", "usable", "checkpoint", "final", "n_epochs"]
    from_sweep = sorted(({k: t[k] for k in keys} for t in live.trials()), key=lambda t: t["trial_id"])
    assert len(from_sweep) == 12 and live.experiments()[0]["live"] is None, "the end of the sweep clears 'live'"

    # `lico-tune index` into another database rebuilds the same rows from the files.
    url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    assert main(["index", str(results_root), "--db", url]) == 0
    assert "indexed 1 experiment(s), 12 trial(s) (8 finished, 4 errored)" in capsys.readouterr().out
    rebuilt = sorted(({k: t[k] for k in keys} for t in Catalog(results_root, url).trials()),
                     key=lambda t: t["trial_id"])
    assert rebuilt == from_sweep

    # The catalog shares its database with Optuna's studies (tables prefixed lico_).
    import optuna
    study = optuna.create_study(study_name="s", storage=url)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert len(Catalog(results_root, url).trials()) == 12
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 2


def test_sync_rereads_only_experiments_whose_files_changed(results_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(results_root / EXP, root / EXP)
    shutil.copytree(root / EXP, root / "copy")                     # a second experiment
    cat = Catalog(root)
    assert sorted(cat.sync()) == sorted(["copy", EXP]) and len(cat.trials()) == 24
    assert cat.sync() == [], "nothing changed"
    stamp = cat.stamp()
    trial = sorted((root / "copy").glob("trial_*_ce"))[0]
    rows = (trial / "result.json").read_text().splitlines()
    last = json.loads(rows[-1])
    last["test/acc"] = 99.5
    time.sleep(0.01)
    (trial / "result.json").write_text("\n".join(rows[:-1] + [json.dumps(last)]) + "\n")
    assert cat.sync() == ["copy"] and cat.stamp() > stamp
    row = next(t for t in cat.trials("copy") if t["trial_dir"] == trial.name)
    assert row["final"]["test/acc"] == 99.5
    shutil.rmtree(root / "copy")
    assert cat.sync() == ["copy"] and cat.experiment_names() == [EXP]


def test_callback_upserts_live_trials_and_reindexes_at_the_end(results_root, tmp_path):
    from lico_tune.tune.callbacks import CatalogCallback
    from lico_tune.results.liveness import driver_record, write_driver
    from lico_tune.storage import Storage
    root = tmp_path / "root"
    shutil.copytree(results_root / EXP, root / EXP)
    write_driver(Storage(str(root / EXP)), str(root / EXP), driver_record())   # its sweep's driver: running (us)
    finished = sorted((root / EXP).glob("trial_*_lico"))[0]
    staging = tmp_path / "staging" / finished.name               # the driver's copy of a trial
    shutil.copytree(finished, staging, ignore=shutil.ignore_patterns("checkpoint_*"))
    first = (staging / "result.json").read_text().splitlines()[0]
    (staging / "result.json").write_text(first + "\n")
    trial = SimpleNamespace(trial_id=json.loads(first)["trial_id"], local_path=str(staging), config={},
                            checkpoint=SimpleNamespace(path=str(finished / "checkpoint_000000")),
                            storage=SimpleNamespace(experiment_dir_name=EXP, trial_dir_name=finished.name,
                                                    storage_path=str(root)))
    cb = CatalogCallback(str(root))
    cb.on_trial_result(0, [trial], trial, {})
    cat = Catalog(root)
    row = next(t for t in cat.trials() if t["trial_id"] == trial.trial_id)
    assert row["status"] == "running" and row["n_epochs"] == 1 and not row["usable"]
    assert row["checkpoint"] == str(finished / "checkpoint_000000")
    assert cat.sync() == [], "a live experiment is not overwritten by older files"
    cb.on_trial_complete(0, [trial], trial)
    assert next(t for t in cat.trials() if t["trial_id"] == trial.trial_id)["status"] == "finished"
    import pickle
    assert pickle.loads(pickle.dumps(cb)).root == str(root), "the Tuner pickles its callbacks"
    cb.on_experiment_end([trial])
    row = next(t for t in cat.trials() if t["trial_id"] == trial.trial_id)
    assert row["n_epochs"] == 2 and row["usable"] and cat.experiments()[0]["live"] is None


def test_a_cloud_uri_root_is_read_through_pyarrow(results_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LICO_TUNE_CATALOG", f"sqlite:///{tmp_path / 'cat.db'}")
    uri = f"file://{results_root}"
    res = load_results(uri)
    assert res.root == uri and len(res.trials) == 12 and res.source.endswith("cat.db")
    local = load_results(results_root, use_catalog=False).trials
    assert sorted(res.trials["test/acc"].dropna()) == pytest.approx(sorted(local["test/acc"].dropna()))
    assert render(build_report(res), "md").startswith(f"## {EXP}")


def test_catalogs_opened_at_once_on_a_new_database_all_open(tmp_path):
    """Six threads open one new SQLite catalog at the same moment, 10 times over (concurrent `index`
    runs do this): each must end with both tables there, none with 'table ... already exists'
    (before the retry, every round had such an error)."""
    import threading
    from sqlalchemy import inspect
    for round_ in range(10):
        url = f"sqlite:///{tmp_path}/cat{round_}.db"
        errors, start = [], threading.Barrier(6)

        def open_one():
            start.wait()
            try:
                Catalog(str(tmp_path), url=url)
            except Exception as e:          # noqa: BLE001 - any error is the failure this test looks for
                errors.append(repr(e))

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        insp = inspect(Catalog(str(tmp_path), url=url, create=False).engine)
        assert insp.has_table("lico_experiments") and insp.has_table("lico_trials")
