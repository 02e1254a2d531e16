"""One configuration and seed finished twice in one experiment (a resume created again a trial that
had finished after Tune's last snapshot: tune/generator.py) counts once: the copy Tune's state knows
stays in the statistics, the other is named and left out."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from lico_tune.results import load_results, scan_experiment
from lico_tune.storage import Storage

REPO = Path(__file__).resolve().parents[2]


def _copy_trial(src: Path, dst: Path, trial_id: str) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint_*", "gallery", "events.*"))
    rows = [json.loads(line) for line in (dst / "result.json").read_text().splitlines() if line.strip()]
    (dst / "result.json").write_text("".join(json.dumps(dict(r, trial_id=trial_id)) + "\n" for r in rows))
    prov = json.loads((dst / "provenance.json").read_text())
    (dst / "provenance.json").write_text(json.dumps(dict(prov, trial_id=trial_id)))


def test_the_same_configuration_and_seed_twice_counts_once(tmp_path):
    published = next((REPO / "docs" / "study" / "results").glob("study-converged_*/trial_*_00000_ce"))
    exp = tmp_path / "root" / "e"
    exp.mkdir(parents=True)
    shutil.copy(published.parent / "lico_run.yaml", exp / "lico_run.yaml")
    _copy_trial(published, exp / "trial_aaaaa_00000_ce", "aaaaa_00000")
    _copy_trial(published, exp / "trial_aaaaa_00004_ce", "aaaaa_00004")       # the re-created one
    other = next((REPO / "docs" / "study" / "results").glob("study-converged_*/trial_*_00001_*"))
    _copy_trial(other, exp / "trial_aaaaa_00001_x", "aaaaa_00001")           # another cell: untouched
    _, scanned = scan_experiment(Storage(str(exp)), str(exp))
    trials = {t["trial_id"]: t for t in scanned}
    assert len(trials) == 3 and all(t["status"] == "finished" for t in trials.values())
    usable = sorted(t for t, r in trials.items() if r["usable"])
    assert usable == ["aaaaa_00000", "aaaaa_00001"], usable
    dup = trials["aaaaa_00004"]
    assert dup["damaged"] and any("same configuration and seed as trial aaaaa_00000" in w for w in dup["warnings"])
    table = load_results(str(tmp_path / "root")).trials          # what report and the dashboard read
    assert sorted(table[table["usable"]]["trial_id"]) == usable


def _experiment_with_an_orphan(tmp_path: Path) -> tuple[Path, str]:
    """The published converged study's state and one of its trials, plus an unfinished trial directory
    (its first epoch only) that the state does not know: what a driver killed between a trial's start
    and the next save leaves (tests/tune/test_crash_resume_s3.py's Optuna resume met one)."""
    published = next((REPO / "docs" / "study" / "results").glob("study-converged_*"))
    exp = tmp_path / "root" / "e"
    exp.mkdir(parents=True)
    for name in ("lico_run.yaml", "summary.json"):
        shutil.copy(published / name, exp / name)
    state = sorted(published.glob("experiment_state-*.json"))[-1]
    shutil.copy(state, exp / state.name)
    known = next(published.glob("trial_*_00000_ce"))
    shutil.copytree(known, exp / known.name, ignore=shutil.ignore_patterns("checkpoint_*", "gallery", "events.*"))
    orphan = exp / "trial_zzzzz_00099_ce"
    _copy_trial(known, orphan, "zzzzz_00099")
    first = (orphan / "result.json").read_text().splitlines()[0]
    (orphan / "result.json").write_text(first + "\n")
    return exp, known.name.removeprefix("trial_").removesuffix("_ce")


def test_an_unfinished_trial_the_saved_state_does_not_know_is_orphaned_once_its_driver_is_gone(tmp_path):
    exp, known_id = _experiment_with_an_orphan(tmp_path)
    info, scanned = scan_experiment(Storage(str(exp)), str(exp))
    trials = {t["trial_id"]: t for t in scanned}
    assert trials[known_id]["status"] == "finished" and trials[known_id]["usable"]
    orphan = trials["zzzzz_00099"]
    assert orphan["status"] == "orphaned" and not orphan["usable"] and orphan["damaged"]
    assert any("not in the experiment's saved state" in w and "lico-tune resume" in w for w in orphan["warnings"])
    assert info["status_counts"]["orphaned"] == 1 and "interrupted" not in info["status_counts"]
    table = load_results(str(tmp_path / "root")).trials
    assert not table.set_index("trial_id").loc["zzzzz_00099", "usable"]


def test_while_its_driver_runs_a_trial_not_yet_saved_is_running(tmp_path):
    """The driver saves the state after a trial starts: meanwhile the trial is not an orphan."""
    from lico_tune.results.liveness import driver_record, write_driver
    exp, _ = _experiment_with_an_orphan(tmp_path)
    (exp / "summary.json").unlink()
    write_driver(Storage(str(exp)), str(exp), driver_record())          # this process: alive
    _, scanned = scan_experiment(Storage(str(exp)), str(exp))
    assert {t["trial_id"]: t["status"] for t in scanned}["zzzzz_00099"] == "running"
