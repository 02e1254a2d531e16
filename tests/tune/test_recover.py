"""Issue 30 item 2, the deleted-checkpoint case (tune/recover.py), on a local disk.

Ray's snapshot can name a trial's checkpoint that `num_to_keep` deleted after the snapshot reached
storage, while a newer one is there (measured on s3 after a driver kill). Made here on purpose: the
run is stopped mid-trial (SIGINT), then the newest checkpoint is moved one number up (as the next
save would have made it, with its result.json line) and the old one deleted. Ray's own restore would
fail the trial for good ("does not exist on storage anymore"); `resume` continues it from the stored
checkpoint and the trial finishes.
"""
from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
import sys
import time

from ray_helpers import REPO, lico_tune, ray_env, result_rows, trial_dirs, write_spec


def test_a_snapshot_naming_a_deleted_checkpoint_resumes_from_the_newest_stored_one(ray_tmp, tmp_path,
                                                                                    tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["train"].update(epochs=6, steps_per_epoch=2)
    spec = write_spec(tmp_path / "r.yaml", tree, search={"num_to_keep": 1})
    exp = tmp_path / "res" / "r"
    driver = subprocess.Popen([sys.executable, "-m", "lico_tune.cli", "run", str(spec), "--storage",
                               str(tmp_path / "res"), "--name", "r"], cwd=REPO, env=ray_env(ray_tmp),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (exp.exists() and trial_dirs(exp) and len(result_rows(trial_dirs(exp)[0])) >= 2):
        assert driver.poll() is None and time.time() < deadline, "the trial never reached its second epoch"
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=120) == 130
    trial = trial_dirs(exp)[0]
    rows = result_rows(trial)
    assert rows[-1]["epoch"] < 6, "stopped too late: the trial had finished"
    named = rows[-1]["checkpoint_dir_name"]                      # what the stop's snapshot names
    # one number above every checkpoint folder (the stop may have left one whose result never reached
    # result.json: not recorded, so not used)
    index = max(int(d.name.rsplit("_", 1)[1]) for d in trial.glob("checkpoint_*"))
    newer = f"checkpoint_{index + 1:06d}"
    shutil.copytree(trial / named, trial / newer)
    shutil.rmtree(trial / named)
    with open(trial / "result.json", "a") as f:
        f.write(json.dumps({**rows[-1], "checkpoint_dir_name": newer}) + "\n")
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=300)
    assert out.returncode == 0, out.stdout[-5000:]
    assert "1 trials, 1 finished, 0 errored" in out.stdout, out.stdout[-3000:]
    log = (trial / "train.log").read_text()
    assert "restored from Tune checkpoint" in log and newer in log, log[-2000:]
    assert result_rows(trial)[-1]["epoch"] == 6
