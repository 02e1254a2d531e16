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
