"""A two-node Ray cluster on loopback (`ray start --head` + `ray start --address`, 1 CPU each, private
temp dirs): `lico-tune run --address` spreads a smoke sweep over both nodes, and, with no
autoscaler, refuses at once a trial no node holds. Only the processes this
test started are stopped (by PID), never with `ray stop`."""
import copy
import json
import shutil
import time

from lico_tune.layout import RUN_FILE
from cluster_helpers import alive_nodes, start_node
from ray_helpers import free_port, kill_started, lico_tune, private_tmpdir, trial_dirs, write_spec


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

        # No autoscaler here (the head's monitor is Ray's read-only one): a trial no node holds is
        # refused at once, before any trial or experiment file, as on one machine.
        out = lico_tune(["run", str(spec), "--address", address, "--storage", str(tmp_path / "res"), "--name", "g",
                         "--set", "resources.gpu=0.25"], head_tmp, timeout=120)
        assert out.returncode == 2, out.stdout[-3000:]
        assert "resources.gpu=0.25: the largest node of the Ray cluster has no GPU" in out.stdout
        assert "waiting for the autoscaler" not in out.stdout
        assert not (tmp_path / "res" / "g" / RUN_FILE).exists()
    finally:
        left = kill_started([head_tmp, worker_tmp])
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)
    assert not left, f"processes left running: {left}"
