"""A two-node Ray cluster on loopback (`ray start --head` + `ray start --address`, 1 CPU each, private
temp dirs): `lico-tune run --address` spreads a smoke sweep over both nodes. Only the processes this
test started are stopped (by PID), never with `ray stop`."""
import copy
import json
import shutil
import subprocess
import sys
import time

from ray_helpers import (free_port, kill_started, lico_tune, private_tmpdir, ray_env, trial_dirs,
                         write_spec)

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def start_node(tmpdir: str, *args: str) -> None:
    cmd = [*RAY, "start", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", f"--temp-dir={tmpdir}",
           "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}",
           f"--metrics-export-port={free_port()}", *args]
    out = subprocess.run(cmd, env=ray_env(tmpdir), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def alive_nodes(address: str, tmpdir: str) -> list[dict]:
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
            "print(json.dumps([{'id': n['NodeID'], 'cpu': n['Resources'].get('CPU', 0)} "
            "for n in ray.nodes() if n['Alive']]))" % address)
    out = subprocess.run([sys.executable, "-c", code], env=ray_env(tmpdir), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_smoke_sweep_runs_on_both_nodes_of_a_loopback_cluster(tmp_path, tiny_trial_tree):
    head_tmp, worker_tmp = private_tmpdir(), private_tmpdir()
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        start_node(head_tmp, "--head", f"--port={port}", "--include-dashboard=false")
        start_node(worker_tmp, f"--address={address}")
        deadline = time.time() + 60
        while len(nodes := alive_nodes(address, head_tmp)) < 2:
            assert time.time() < deadline, f"the worker node did not join: {nodes}"
            time.sleep(1)
        assert [n["cpu"] for n in nodes] == [1.0, 1.0]

        tree = copy.deepcopy(tiny_trial_tree)
        spec = write_spec(tmp_path / "c.yaml", tree, ablation={"ce": {"lico.alpha": 0, "lico.beta": 0}, "lico": {}})
        out = lico_tune(["run", str(spec), "--smoke-test", "--address", address, "--storage", str(tmp_path / "res"),
                         "--name", "c"], head_tmp, timeout=240)
        assert out.returncode == 0, out.stdout[-5000:]
        assert "2 trials, 2 finished, 0 errored" in out.stdout
        ran_on = {json.loads((d / "provenance.json").read_text())["node_id"]
                  for d in trial_dirs(tmp_path / "res" / "c-smoke")}
        assert ran_on == {n["id"] for n in nodes}, "the two trials must run one on each node"
    finally:
        left = kill_started([head_tmp, worker_tmp])
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)
    assert not left, f"processes left running: {left}"
