"""The published studies in docs/study still open with today's code: their reports regenerate
identically (each publish.sh --check), the dashboard shows every published experiment, and
`lico-tune rerun` retrains a published trial from its weightless record, writing nothing there."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import checksums
from lico_tune.cli import main
from lico_tune.train.rerun import TIMING
from ray_helpers import REPO

STUDY = REPO / "docs" / "study"
# Every study with a published report (a study still running has a publish.sh and no report yet).
PUBLISHERS = sorted(p for p in STUDY.rglob("publish.sh") if any(p.parent.glob("report*.md")))
ROOTS = [p.parent / "results" for p in PUBLISHERS]
APP = REPO / "dashboards" / "app.py"


@pytest.mark.parametrize("publisher", PUBLISHERS, ids=lambda p: p.parent.name)
def test_publish_check_regenerates_every_published_report(publisher):
    bindir = Path(sys.executable).parent
    env = {**os.environ, "LICO_TUNE": str(bindir / "lico-tune"), "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(publisher), "--check"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    regenerated = re.findall(r"^(\S+\.md): regenerated identically$", out.stdout, re.M)
    published = sorted(str(p.relative_to(REPO)) for p in publisher.parent.glob("report*.md"))
    assert sorted(regenerated) == published, out.stdout


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.parent.name)
def test_dashboard_shows_every_published_experiment(root, monkeypatch):
    monkeypatch.setenv("LICO_TUNE_STORAGE", str(root))
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    overview = at.dataframe[0].value
    expected = {d.name: len(list(d.glob("trial_*"))) for d in root.iterdir() if d.is_dir()}
    shown = dict(zip(overview["experiment"], overview["trials"]))
    assert shown == expected
    assert (overview["finished"] == overview["trials"]).all() and (overview["errored"] == 0).all()
    at.switch_page("views/ablations.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) > 0, "the ablation table of a published experiment"


def test_rerun_retrains_a_published_trial_and_writes_nothing_there(capsys):
    """The 32-step study's CE trial (one epoch of 32 steps): its record has no weights, so rerun
    compares every metric value of metrics.json. It ran on another CPU model, so the bits may
    differ here (docs/reproducibility.md); what must hold is that it opens, compares them all and
    says why they may differ."""
    trial = next((STUDY / "2026-12-01_32-steps" / "results").glob("study-offline_*/trial_*_00000_ce"))
    before = checksums(trial)
    history = json.loads((trial / "metrics.json").read_text())["history"]
    n_values = sum(not key.endswith(TIMING) for epoch in history for key in epoch)   # warnings included
    rc = main(["rerun", str(trial), "--quiet"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert rc in (0, 1), out
    assert "metrics-only record" in out
    m = re.search(r"match: (\d+) metric values are bit-identical|(\d+) of (\d+) metric values", out)
    assert m, out
    assert int(m[1] or m[3]) == n_values
    if rc == 1:
        assert "other CPU model than the record's" in out or "instruction sets" in out, out
    assert checksums(trial) == before
