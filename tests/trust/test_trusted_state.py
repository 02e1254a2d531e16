"""Issue 24, no code runs from data: `resume` loads only files signed with the user's key, and every
reader of an experiment's YAML has the spec loader's limits. Real `lico-tune` processes and Ray.

* A finished run is signed (tuner.pkl, the experiment state, the searcher's state, the plan) with
  the key in LICO_TUNE_KEY_FILE (conftest: one per test session); a copy resumes and stays signed.
* A payload (a pickle whose loading would create a marker file) in tuner.pkl, in the newest
  experiment_state-*.json (a CLOUDPICKLE_FALLBACK value), in the searcher's state or a trial's
  error.pkl, with the
  manifest edited to match (as anyone who can write the directory can), is refused: exit 2, one
  paragraph naming the file and `lico-tune trust`, no traceback, and the marker never appears. So
  are a missing manifest, the old unsigned format, and an unlisted pickle. Controls show that Ray's
  own loaders do run each payload.
* `lico-tune trust DIR` signs a directory on purpose; resume then loads it.
* A "billion laughs" trial_spec.yaml or lico_run.yaml makes `rerun`, `report`, `resume` and the
  dashboard fail in seconds (exit 2; the dashboard warns that the experiment was skipped).
"""
from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import time
from pathlib import Path

import pytest

from lico_tune.layout import MANIFEST_FILE, RUN_FILE, SUMMARY_FILE, TRIAL_SPEC, TUNER_FILE
from conftest import MarkerPayload, assert_refused
from ray_helpers import lico_tune, trial_dirs
# _copy(finished, tmp_path) copies the session's finished experiment (tests/results_fixtures.py:
# 2 seeds on a grid, 1 epoch each) to <tmp_path>/res/done for a test to change.
from test_no_lost_results import _copy

pytest_plugins = ["results_fixtures"]

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def _newest(exp: Path, pattern: str) -> Path:
    return sorted(exp.glob(pattern))[-1]


def _forge(exp: Path, name: str) -> None:
    """What someone without the key can do: put the file's new SHA-256 into the manifest."""
    data = json.loads((exp / MANIFEST_FILE).read_text())
    data["files"][name] = hashlib.sha256((exp / name).read_bytes()).hexdigest()
    (exp / MANIFEST_FILE).write_text(json.dumps(data))


def _refused_untouched(exp: Path, ray_tmp: str, marker: Path, *names: str) -> str:
    t0 = time.monotonic()
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=120)
    assert time.monotonic() - t0 < 60
    msg = assert_refused(out, *names, "lico-tune trust", fix=False, alone=False)
    assert "resuming" not in out.stdout
    assert not marker.exists(), "the payload ran"
    return msg


def test_a_run_signs_what_resume_loads_and_a_copy_resumes(finished, ray_tmp, tmp_path):
    from lico_tune.trust import verify_experiment
    manifest = json.loads((finished["exp"] / MANIFEST_FILE).read_text())
    assert set(manifest) == {"format", "files", "hmac"}
    names = set(manifest["files"])
    assert {TUNER_FILE, RUN_FILE} <= names
    assert any(n.startswith("experiment_state-") for n in names)
    assert any(n.startswith("basic-variant-state-") for n in names)      # the searcher's state (a pickle)
    assert SUMMARY_FILE not in names
    exp = _copy(finished, tmp_path)
    verify_experiment(str(exp))                  # a moved copy verifies: paths are relative to it
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=240)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "resuming" in out.stdout
    states = sorted(exp.glob("experiment_state-*.json"))
    assert len(states) == 2                      # the resumed session wrote its own state ...
    assert states[-1].name in verify_experiment(str(exp))      # ... and signed it


@pytest.mark.parametrize("forged", ["digest", "old format", "null entry"])
def test_a_replaced_tuner_pkl_is_refused_however_the_manifest_is_edited(finished, ray_tmp, tmp_path, forged):
    exp = _copy(finished, tmp_path)
    marker = tmp_path / "pwned"
    (exp / TUNER_FILE).write_bytes(pickle.dumps(MarkerPayload(marker)))
    if forged == "digest":
        _forge(exp, TUNER_FILE)
        names = (str(exp / MANIFEST_FILE), "not signed with your key")
    elif forged == "old format":
        (exp / MANIFEST_FILE).write_text(json.dumps({"sha256": {}}))
        names = (str(exp / MANIFEST_FILE), "old unsigned format")
    else:
        data = json.loads((exp / MANIFEST_FILE).read_text())
        data["files"][TUNER_FILE] = None
        (exp / MANIFEST_FILE).write_text(json.dumps(data))
        names = (str(exp / MANIFEST_FILE), "not a signed manifest")
    _refused_untouched(exp, ray_tmp, marker, *names)


def test_a_payload_in_the_experiment_state_is_refused(finished, ray_tmp, tmp_path):
    from ray.tune.utils.serialization import _loads_with_cloudpickle
    exp = _copy(finished, tmp_path)
    marker = tmp_path / "pwned"
    state = _newest(exp, "experiment_state-*.json")
    data = json.loads(state.read_text())
    data["runner_data"]["payload"] = {"_type": "CLOUDPICKLE_FALLBACK", "value": pickle.dumps(MarkerPayload(marker)).hex()}
    state.write_text(json.dumps(data))
    _forge(exp, state.name)
    _refused_untouched(exp, ray_tmp, marker, str(exp / MANIFEST_FILE))
    shutil.copy(finished["exp"] / MANIFEST_FILE, exp / MANIFEST_FILE)
    _refused_untouched(exp, ray_tmp, marker, str(state), "changed since lico-tune signed it")
    _loads_with_cloudpickle(state.read_text())    # control: what Ray's resume calls on it runs the payload
    assert marker.exists()


def test_a_payload_in_the_searcher_state_or_an_unlisted_pickle_is_refused(finished, ray_tmp, tmp_path):
    from ray.tune.utils.util import _load_newest_checkpoint
    exp = _copy(finished, tmp_path)
    marker = tmp_path / "pwned"
    searcher = _newest(exp, "basic-variant-state-*.json")
    searcher.write_bytes(pickle.dumps(MarkerPayload(marker)))
    _refused_untouched(exp, ray_tmp, marker, str(searcher), "changed since lico-tune signed it")
    shutil.copy(finished["exp"] / searcher.name, searcher)
    extra = exp / "searcher-state-9999-12-31_00-00-00.pkl"            # newer: Ray would read this one
    extra.write_bytes(pickle.dumps(MarkerPayload(marker)))
    _refused_untouched(exp, ray_tmp, marker, str(extra), "not in the signed manifest")
    extra.unlink()
    error_pkl = trial_dirs(exp)[0] / "error.pkl"                    # what Ray unpickles for a trial's error
    error_pkl.write_bytes(pickle.dumps(MarkerPayload(marker)))
    _refused_untouched(exp, ray_tmp, marker, str(error_pkl), "not in the signed manifest")
    error_pkl.unlink()
    searcher.write_bytes(pickle.dumps(MarkerPayload(marker)))
    _load_newest_checkpoint(str(exp), "basic-variant-state-*.json")   # control: Ray's loader runs it
    assert marker.exists()


def test_a_missing_manifest_is_refused_until_the_directory_is_trusted(finished, ray_tmp, tmp_path):
    exp = _copy(finished, tmp_path)
    (exp / MANIFEST_FILE).unlink()
    msg = _refused_untouched(exp, ray_tmp, tmp_path / "never", str(exp / MANIFEST_FILE), "is missing")
    assert f"lico-tune trust {exp}" in msg
    out = lico_tune(["trust", str(exp)], ray_tmp, timeout=60)
    assert out.returncode == 0 and TUNER_FILE in out.stdout, out.stdout[-2000:]
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=240)
    assert out.returncode == 0, out.stdout[-4000:]


@pytest.mark.parametrize("command, mode, says", [
    ("resume", 0o600, ("not signed with your key",)),     # another user's key, or a key since replaced
    ("trust", 0o644, ("chmod 600",)),                     # a key others can read could sign for them
])
def test_another_key_or_a_key_others_can_read_is_refused(finished, ray_tmp, tmp_path, command, mode, says):
    exp = _copy(finished, tmp_path)
    key = tmp_path / "some.key"
    key.write_text("0" * 64 + "\n")
    key.chmod(mode)
    out = lico_tune([command, str(exp)], ray_tmp, timeout=120, LICO_TUNE_KEY_FILE=str(key))
    assert_refused(out, str(key), *says, fix=False, alone=False)


# ----------------------------------------------------------------------------- YAML limits

def test_a_billion_laughs_trial_spec_fails_rerun_and_report_fast(finished, ray_tmp, tmp_path):
    exp = _copy(finished, tmp_path)
    trial = trial_dirs(exp)[0]
    (trial / TRIAL_SPEC).write_text(BILLION_LAUGHS)
    for args in (["rerun", str(trial)], ["report", str(tmp_path / "res"), "--experiment", "done"]):
        t0 = time.monotonic()
        out = lico_tune(args, ray_tmp, timeout=60)
        assert time.monotonic() - t0 < 60
        assert_refused(out, TRIAL_SPEC, "billion laughs", fix=False, alone=False)


def test_a_billion_laughs_run_file_fails_report_and_resume_fast(finished, ray_tmp, tmp_path):
    exp = _copy(finished, tmp_path)
    (exp / RUN_FILE).write_text(BILLION_LAUGHS)
    for args in (["report", str(tmp_path / "res")], ["resume", str(exp)]):
        out = lico_tune(args, ray_tmp, timeout=60)
        assert_refused(out, RUN_FILE, "billion laughs", fix=False, alone=False)


def test_a_billion_laughs_trial_spec_gives_the_dashboard_a_warning_fast(finished, tmp_path, monkeypatch):
    import sys
    from streamlit.testing.v1 import AppTest
    from ray_helpers import REPO
    sys.path.insert(0, str(REPO / "dashboards"))
    exp = _copy(finished, tmp_path)
    (trial_dirs(exp)[0] / TRIAL_SPEC).write_text(BILLION_LAUGHS)
    monkeypatch.setenv("LICO_TUNE_STORAGE", str(tmp_path / "res"))
    t0 = time.monotonic()
    at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=60).run()
    assert time.monotonic() - t0 < 60
    assert not at.exception, [e.value for e in at.exception]
    said = [str(w.value) for w in at.warning]
    assert any(TRIAL_SPEC in w and "billion laughs" in w for w in said), said


# ----------------------------------------------------------------------------- signing rules (no Ray)

def test_ray_writes_and_reads_through_the_signed_filesystem(finished, tmp_path, monkeypatch):
    """tune/signed_fs.py, without Ray: a write is signed before it lands (a crash between the manifest
    and the file leaves the old file, still accepted); reads give the verified bytes, not storage's;
    a pickle that appears in storage is invisible to Ray and refused by resume; Ray's copies of
    lico-tune's own files are dropped."""
    import pyarrow.fs as pafs
    from lico_tune.errors import UntrustedExperiment
    from lico_tune.trust import verified_bytes, verify_experiment
    from lico_tune.tune import signed_fs
    exp = _copy(finished, tmp_path)
    verified = verified_bytes(str(exp))
    fs, root, signer = signed_fs.signed_filesystem(str(exp), verified, verify_experiment(str(exp)))
    state = _newest(exp, "experiment_state-*.json")
    old = state.read_bytes()
    with fs.open_output_stream(f"{root}/{state.name}") as f:        # Ray's next save
        f.write(old + b" ")
    assert state.read_bytes() == old + b" " and state.name in verify_experiment(str(exp))

    def killed(point, name):                                        # the driver dies between manifest and file
        if point == "upload":
            raise KeyboardInterrupt
    monkeypatch.setattr(signed_fs, "_testing_pause", killed)
    with pytest.raises(KeyboardInterrupt):
        with fs.open_output_stream(f"{root}/{state.name}") as f:
            f.write(old + b"  ")
    assert state.read_bytes() == old + b" "
    verify_experiment(str(exp))                                     # no `trust` needed after the crash
    state.write_bytes(old + b"   ")                                 # bytes the driver never wrote
    with pytest.raises(UntrustedExperiment, match="changed since lico-tune signed it"):
        verify_experiment(str(exp))
    state.write_bytes(old + b" ")
    (exp / TUNER_FILE).write_bytes(b"swapped after the check")
    with fs.open_input_file(f"{root}/{TUNER_FILE}") as f:
        assert f.read() == verified[TUNER_FILE]                    # Ray reads what was verified
    (exp / "searcher-state-x.pkl").write_bytes(pickle.dumps({"dropped": "meanwhile"}))
    assert "searcher-state-x.pkl" not in [i.base_name for i in fs.get_file_info(pafs.FileSelector(root))]
    with pytest.raises(FileNotFoundError):
        fs.open_input_stream(f"{root}/searcher-state-x.pkl")
    with fs.open_output_stream(f"{root}/{MANIFEST_FILE}") as f:     # Ray re-uploading a downloaded manifest
        f.write(b"{}")
    (exp / TUNER_FILE).write_bytes(verified[TUNER_FILE])
    signer.seal()
    manifest = json.loads((exp / MANIFEST_FILE).read_text())
    assert all(isinstance(v, str) for v in manifest["files"].values()), "seal keeps one digest per file"
    with pytest.raises(UntrustedExperiment, match="searcher-state-x.pkl is not in the signed manifest"):
        verify_experiment(str(exp))


def test_a_key_inside_the_experiment_is_refused(finished, tmp_path, monkeypatch):
    from lico_tune.errors import BadInput
    from lico_tune.trust import sign_experiment
    exp = _copy(finished, tmp_path)
    monkeypatch.setenv("LICO_TUNE_KEY_FILE", str(exp / "manifest.key"))
    with pytest.raises(BadInput, match="lies inside the experiment"):
        sign_experiment(str(exp))
    assert not (exp / "manifest.key").exists()
