"""Issue 30 items 2, 3 and 5 on a real S3 server and a two-node loopback cluster (one Ray start per module).

moto's S3 server (started here on 127.0.0.1) holds the experiments; `ray start --head` and a worker
node, 1 CPU each, with their own temp dirs and HOMEs (they share no directory: storage is the bucket;
the Hugging Face model cache is read from one place, as a baked image would be).

* The driver is SIGKILLed at three points: right after a trial's last epoch reached storage, in a save
  (between the signed manifest and the state file it lists) and in the signing (before the manifest);
  `lico-tune resume` alone (no `trust`) finishes every trial, the trial finished before the kill keeps
  its recorded metrics, and every trial ends with the metrics of an uninterrupted `lico-tune train` of
  the same trial (bit for bit: training resumes from its checkpoint with the RNG states, as `lico-tune
  rerun` does).
  A state file of the resumed experiment then replaced in the bucket is refused.
* A second driver on a live experiment is told who holds it (the lock before the signatures).
* An Optuna sweep resumes from another HOME (the study comes back from the bucket).
* A worker node killed in the middle of a trial (its raylet, as a spot reclaim): the trial continues
  from its last checkpoint on the other node and the sweep finishes.

The kill points use the driver's testing aid LICO_TUNE_TESTING_PAUSE_AT (tune/signed_fs.py).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_TRIAL, MarkerPayload
from lico_tune.cli import main
from ray_helpers import REPO, free_port, kill_started, lico_tune, pids_with_tmpdir, private_tmpdir, ray_env, write_spec
from cluster_helpers import RAY, alive_nodes

pytestmark = pytest.mark.slow       # one S3 server and one cluster for the module; about 20 min on 2 busy cores

BUCKET = "lico"
HF_HOME = os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface")


def _s3(port: int):
    import pyarrow.fs as pafs
    return pafs.S3FileSystem(endpoint_override=f"http://127.0.0.1:{port}", access_key="test", secret_key="test",
                             region="us-east-1", allow_bucket_creation=True)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("cloud")
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmps = [private_tmpdir(), private_tmpdir()]
    aws = dict(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", HF_HOME=HF_HOME)
    drivers: list[str] = []
    try:
        deadline = time.time() + 60
        while True:
            try:
                _s3(port).create_dir(BUCKET)
                break
            except OSError:
                assert time.time() < deadline and moto.poll() is None, "moto's S3 server did not start"
                time.sleep(0.3)
        ray_port = free_port()
        address = f"127.0.0.1:{ray_port}"
        for i, tmp in enumerate(tmps):
            home = base / f"home-node{i}"
            home.mkdir()
            args = ["--head", f"--port={ray_port}", "--include-dashboard=false"] if i == 0 else [f"--address={address}"]
            cmd = [*RAY, "start", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", f"--temp-dir={tmp}",
                   "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}",
                   f"--metrics-export-port={free_port()}", *args]
            out = subprocess.run(cmd, env=ray_env(tmp, HOME=str(home), **aws), capture_output=True, text=True,
                                 timeout=120)
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        deadline = time.time() + 60
        while len(nodes := alive_nodes(address, tmps[0])) < 2:
            assert time.time() < deadline, f"the worker node did not join: {nodes}"
            time.sleep(1)
        yield {"address": address, "aws": aws, "base": base, "port": port, "tmps": tmps, "drivers": drivers,
               "worker_tmp": tmps[1]}
    finally:
        left = kill_started(tmps + drivers)
        moto.terminate()
        moto.wait(timeout=30)
        assert not left, f"processes left running: {left}"


def driver_env(cloud, home: str = "driver", **extra) -> dict:
    h = cloud["base"] / f"home-{home}"
    h.mkdir(exist_ok=True)
    return {**cloud["aws"], "HOME": str(h), **extra}


def run_cli(cloud, args: list[str], home: str = "driver", timeout: float = 300, **extra):
    tmp = private_tmpdir()
    cloud["drivers"].append(tmp)
    return lico_tune([*args, "--address", cloud["address"]] if args[0] in ("run", "resume") else args, tmp,
                     timeout=timeout, **driver_env(cloud, home, **extra))


def start_driver(cloud, args: list[str], **extra) -> subprocess.Popen:
    tmp = private_tmpdir()
    cloud["drivers"].append(tmp)
    return subprocess.Popen([sys.executable, "-m", "lico_tune.cli", *args, "--address", cloud["address"]], cwd=REPO,
                            env=ray_env(tmp, **driver_env(cloud, **extra)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill(driver: subprocess.Popen) -> None:
    os.killpg(driver.pid, signal.SIGKILL)     # the driver and everything in its process group
    driver.wait(timeout=30)


def read(cloud, key: str):
    fs = _s3(cloud["port"])
    try:
        with fs.open_input_stream(f"{BUCKET}/{key}") as f:
            return f.read()
    except (FileNotFoundError, OSError):
        return None


def listing(cloud, key: str) -> list[str]:
    import pyarrow.fs as pafs
    infos = _s3(cloud["port"]).get_file_info(pafs.FileSelector(f"{BUCKET}/{key}", allow_not_found=True))
    return sorted(i.base_name for i in infos)


def final_rows(cloud, exp: str, key: str = "train.epochs") -> dict[int, list[dict]]:
    """each trial's `key` (its train.epochs) -> its result.json rows, from the bucket."""
    rows = {}
    for d in listing(cloud, exp):
        if d.startswith("trial_"):
            lines = [json.loads(ln) for ln in (read(cloud, f"{exp}/{d}/result.json") or b"").decode().splitlines()
                     if ln.strip()]
            cfg = lines[0]["config"] if lines else {}
            rows[cfg.get(key)] = lines
    return rows


COMPARED = ("epoch", "train/ce", "train/loss", "val/acc", "test/acc", "test/acc_ema")


def finals(cloud, exp: str, key: str = "train.epochs", epochs: int | None = None) -> dict[int, dict]:
    """each trial's `key` -> the COMPARED metrics of its last epoch (None: not reached)."""
    out = {}
    for value, lines in final_rows(cloud, exp, key).items():
        last = [ln for ln in lines if ln.get("epoch") == (epochs or value)]
        out[value] = {k: last[-1].get(k) for k in COMPARED} if last else None
    return out


@pytest.fixture(scope="module")
def spec(tmp_path_factory, tiny_trial_tree_module):
    tree = copy.deepcopy(tiny_trial_tree_module)
    tree["train"].update(steps_per_epoch=2)
    # two trials of different lengths: one finishes while the other is mid-way
    return write_spec(tmp_path_factory.mktemp("spec") / "c.yaml", tree,
                      search={"space": {"train.epochs": {"grid": [2, 8]}}, "num_to_keep": 1, "max_failures": 2})


@pytest.fixture(scope="module")
def tiny_trial_tree_module():
    return copy.deepcopy(TINY_TRIAL)


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory):
    """train.epochs -> the COMPARED metrics of an uninterrupted run of that trial: `lico-tune train` of
    the spec's base at 2 and 8 epochs, without Ray or S3 (a Ray trial of the same config gives the same
    bits, as `lico-tune rerun` checks; a sweep through the cluster took ~130 s more)."""
    got = {}
    for epochs in (2, 8):
        out = tmp_path_factory.mktemp(f"reference-{epochs}") / "run"
        assert main(["train", str(spec), "--set", f"train.epochs={epochs}", "--out", str(out), "--quiet"]) == 0
        last = json.loads((out / "metrics.json").read_text())["history"][-1]
        assert last["epoch"] == epochs, last
        got[epochs] = {k: last.get(k) for k in COMPARED}
    assert all(v is not None for row in got.values() for v in row.values()), got
    return got


def _wait(cond, driver, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not cond():
        if driver.poll() is not None:
            raise AssertionError(f"the driver ended before {what}:\n{driver.stdout.read()[-4000:]}")
        assert time.time() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.2)


@pytest.mark.parametrize("point", ["after-done", "upload:experiment_state:3", "sign:experiment_state:3"])
def test_a_killed_driver_is_resumed_by_resume_alone(cloud, spec, reference, point, tmp_path):
    name = "k-" + point.split(":")[0]
    pause_dir = tmp_path
    extra = {} if point == "after-done" else {"LICO_TUNE_TESTING_PAUSE_AT": point,
                                               "LICO_TUNE_TESTING_PAUSE_DIR": str(pause_dir)}
    driver = start_driver(cloud, ["run", str(spec), "--storage", f"s3://{BUCKET}", "--name", name], **extra)
    try:
        if point == "after-done":           # the short trial's last epoch is in the bucket
            _wait(lambda: (finals(cloud, name).get(2) or {}).get("epoch") == 2, driver, "the short trial finished")
        else:                               # the driver pauses in that window (its 3rd save of the state)
            _wait(lambda: (pause_dir / "paused").exists(), driver, f"the pause at {point}")
    finally:
        kill(driver)
    if point != "after-done":               # killed in the window: the state in the bucket is the previous save's,
        manifest = json.loads(read(cloud, f"{name}/lico_checksums.json"))["files"]
        state = next(k for k in manifest if k.startswith("experiment_state-"))
        accepted = manifest[state] if isinstance(manifest[state], list) else [manifest[state]]
        stored = hashlib.sha256(read(cloud, f"{name}/{state}")).hexdigest()
        # ... which the manifest accepts: beside the new one it was about to write (upload), or alone (sign)
        assert stored == (accepted[0] if point.startswith("upload") else accepted[-1]), (stored, accepted)
        assert len(accepted) == 2
    before = finals(cloud, name)
    assert before.get(8) is None, "killed too late: the long trial had finished"
    out = run_cli(cloud, ["resume", f"s3://{BUCKET}/{name}"])
    assert out.returncode == 0, out.stdout[-6000:]
    assert "lico-tune trust" not in out.stdout, out.stdout[-8000:]
    assert "Traceback" not in out.stdout, out.stdout[-8000:]       # a worker's exit too (trainable.exit_is_not_an_error)
    assert "2 trials, 2 finished, 0 errored" in out.stdout, out.stdout[-3000:]
    after = finals(cloud, name)
    if before.get(2) is not None:           # finished before the kill: its recorded metrics stand
        assert after[2] == before[2]
    assert after == reference, "a resumed trial ended with other metrics than an uninterrupted run"
    if point == "after-done":
        assert_a_replaced_state_is_refused(cloud, name, tmp_path / "pwned")


def assert_a_replaced_state_is_refused(cloud, name: str, marker: Path) -> None:
    """The finished experiment's generator state replaced in the bucket by a pickle that would create
    `marker`: resume refuses it by name, and nothing of it runs."""
    states = [n for n in listing(cloud, name) if n.startswith("basic-variant-state-")]
    assert states
    with _s3(cloud["port"]).open_output_stream(f"{BUCKET}/{name}/{states[-1]}") as f:
        f.write(pickle.dumps(MarkerPayload(marker)))
    out = run_cli(cloud, ["resume", f"s3://{BUCKET}/{name}"])
    assert out.returncode == 2, out.stdout[-4000:]
    assert "changed since lico-tune signed it" in out.stdout and states[-1] in out.stdout
    assert not marker.exists()


def test_a_second_driver_is_told_who_holds_a_live_experiment(cloud, spec):
    driver = start_driver(cloud, ["run", str(spec), "--storage", f"s3://{BUCKET}", "--name", "live"])
    try:
        _wait(lambda: len(final_rows(cloud, "live").get(8) or []) >= 1, driver, "the first epoch")
        out = run_cli(cloud, ["resume", f"s3://{BUCKET}/live"], timeout=120)
    finally:
        kill(driver)
    assert out.returncode == 2, out.stdout[-4000:]
    assert "being run by another lico-tune driver" in out.stdout
    assert "lico-tune trust" not in out.stdout


def test_an_optuna_sweep_resumes_from_another_home(cloud, tmp_path, tiny_trial_tree_module):
    tree = copy.deepcopy(tiny_trial_tree_module)
    tree["train"].update(steps_per_epoch=2, epochs=2)
    spec = write_spec(tmp_path / "o.yaml", tree, search={
        "algorithm": "optuna", "num_samples": 4, "max_concurrent": 2,
        "space": {"lico.alpha": {"uniform": [0.1, 1.0]}}, "metrics": {"val/acc": "max"}})
    driver = start_driver(cloud, ["run", str(spec), "--storage", f"s3://{BUCKET}", "--name", "opt"], home="first")
    try:
        _wait(lambda: "optuna.db" in listing(cloud, "opt") and
              any(r and r[-1].get("epoch") == 2 for r in final_rows(cloud, "opt").values()), driver, "a trial's end")
    finally:
        kill(driver)
    assert "optuna.db" in listing(cloud, "opt"), "the study was not copied into the experiment"
    first_cache = cloud["base"] / "home-first" / ".cache"
    assert list(first_cache.glob("lico-tune/optuna/opt.db")), "the study was not on the first driver"
    shutil.rmtree(first_cache)              # the first machine is gone (its path is in the searcher's pickles)
    out = run_cli(cloud, ["resume", f"s3://{BUCKET}/opt"], home="second")
    assert out.returncode == 0, out.stdout[-6000:]
    assert "Traceback" not in out.stdout and "OperationalError" not in out.stdout
    assert "4 trials, 4 finished, 0 errored" in out.stdout, out.stdout[-3000:]
    report = run_cli(cloud, ["report", f"s3://{BUCKET}"], home="second", timeout=120)
    assert report.returncode == 0, report.stdout[-3000:]
    # every trial of the study finished; a trial that finished after the last snapshot but before the
    # kill keeps its directory beside its replacement (docs/sweeps.md "Resuming"), so 4 or more; one
    # the kill left unfinished and the snapshot lacks is 'orphaned' (run again under a new id)
    section = report.stdout.split("## opt", 1)[1]
    counted = re.search(r"(\d+) trials: (\d+) finished(?:, (\d+) orphaned)?\.", section)
    assert counted, section[:600]
    total, finished, orphaned = int(counted[1]), int(counted[2]), int(counted[3] or 0)
    assert total == finished + orphaned and finished >= 4, section[:600]


def test_a_worker_node_lost_mid_trial_continues_on_the_other_node(cloud, reference, tmp_path):
    """Last in the module: it takes the worker node away for good. Two 8-epoch trials (seeds 0 and 1),
    one on each node; the worker's raylet is killed mid-way; its trial waits for the head's CPU and
    continues there from its last checkpoint."""
    tree = copy.deepcopy(TINY_TRIAL)
    tree["train"].update(steps_per_epoch=2, epochs=8)
    spec = write_spec(tmp_path / "s.yaml", tree, search={"space": {"train.seed": {"grid": [0, 1]}},
                                                          "num_to_keep": 1, "max_failures": 2})
    driver = start_driver(cloud, ["run", str(spec), "--storage", f"s3://{BUCKET}", "--name", "spot"])
    worker = worker_node(cloud)
    try:
        _wait(lambda: all(len(final_rows(cloud, "spot", "train.seed").get(seed) or []) >= 2 for seed in (0, 1)),
              driver, "two epochs of both trials")
        dirs = [d for d in listing(cloud, "spot") if d.startswith("trial_")]
        on_worker = [d for d in dirs if json.loads(read(cloud, f"spot/{d}/provenance.json"))["node_id"] == worker]
        assert len(dirs) == 2 and len(on_worker) == 1, "one trial per node"
        raylets = [p for p in pids_with_tmpdir(cloud["worker_tmp"]) if b"raylet" in _cmdline(p)]
        assert raylets, "no raylet of the worker node found"
        for pid in raylets:
            os.kill(pid, signal.SIGKILL)      # as a spot reclaim takes the machine
        out, _ = driver.communicate(timeout=500)
    except BaseException:
        kill(driver)
        raise
    assert driver.returncode == 0, out[-6000:]
    assert "2 trials, 2 finished, 0 errored" in out, out[-3000:]
    moved = on_worker[0]
    assert json.loads(read(cloud, f"spot/{moved}/provenance.json"))["node_id"] != worker, "it did not move"
    log = read(cloud, f"spot/{moved}/train.log").decode()
    assert "restored from Tune checkpoint" in log, log[-3000:]
    # seed 0 with 8 epochs is the reference's long trial: the same metrics, whichever of the two moved
    assert finals(cloud, "spot", "train.seed", epochs=8)[0] == reference[8]


def worker_node(cloud) -> str:
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); print(json.dumps([n['NodeID'] for n in "
            "ray.nodes() if n['Alive'] and 'node:__internal_head__' not in n['Resources']]))" % cloud["address"])
    out = subprocess.run([sys.executable, "-c", code], env=ray_env(cloud["tmps"][0], **cloud["aws"]),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    ids = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(ids) == 1, ids
    return ids[0]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
