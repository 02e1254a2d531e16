"""Scale from zero, as the recipes' clusters do: Ray's autoscaler with its `fake_multinode` provider
(worker nodes are raylets on this machine) fed the node types of ray_cluster.yaml, a 0-CPU head and
GPU workers from zero. Not ray.cluster_utils.AutoscalingCluster: its start() runs `ray stop --force`,
which stops every Ray process on the machine. The head is started here with a private temp dir;
every process it, its autoscaler and the nodes that autoscaler launches start inherits that
RAY_TMPDIR, so kill_started stops them all by PID. And what capacity.py decides, case by case."""
import copy
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

from cluster_helpers import alive_nodes, pids_naming, start_node
from lico_tune.errors import SpecError
from lico_tune.plan import plan_search
from lico_tune.plan.capacity import Capacity, NodeType, check_cluster_resources
from lico_tune.spec import validate_spec
from ray_helpers import (REPO, free_port, kill_started, lico_tune, private_tmpdir, ray_env, trial_dirs,
                         write_spec)

# For a node type whose resources Ray would detect at launch (`resources: {}`); the fake GPU is only a
# resource: the trials train on the CPU (train.device auto).
FAKE_WORKER = {"CPU": 1, "GPU": 1}


def fake_cluster_config(gcs_address: str) -> dict:
    """ray_cluster.yaml's node types for Ray's fake_multinode provider: the head type as the provider
    names it (ray.head.default) with the recipe's resources ({CPU: 0}); each worker type with its
    min_workers and resources (a g5.2xlarge's: 8 CPUs, 1 GPU; FAKE_WORKER where the recipe lets Ray detect
    them), at most 2 nodes."""
    recipe = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    head = recipe["head_node_type"]
    types = {"ray.head.default": {"resources": recipe["available_node_types"][head]["resources"],
                                  "node_config": {}, "max_workers": 0}}
    for name, t in recipe["available_node_types"].items():
        if name != head:
            types[name] = {"resources": t["resources"] or dict(FAKE_WORKER), "node_config": {},
                           "min_workers": t["min_workers"], "max_workers": min(t["max_workers"], 2)}
    empty = ["initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
             "head_start_ray_commands", "worker_start_ray_commands", "cluster_synced_files",
             "rsync_exclude", "rsync_filter"]
    return {"cluster_name": "lico-tune-fake", "max_workers": 2, "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "gcs_address": gcs_address},
            "available_node_types": types, "head_node_type": "ray.head.default", "auth": {}, "docker": {},
            "file_mounts": {}, "file_mounts_sync_continuously": False, **{k: [] for k in empty}}


@pytest.fixture(scope="module")
def autoscaling_cluster(tmp_path_factory):
    """(address, temp dir, config path) of a fake_multinode cluster with nothing but its 0-CPU head."""
    tmp = private_tmpdir()
    port = free_port()
    address = f"127.0.0.1:{port}"
    config = tmp_path_factory.mktemp("autoscaler") / "cluster.yaml"
    config.write_text(yaml.safe_dump(fake_cluster_config(address)))
    try:
        start_node(tmp, "--head", f"--port={port}", "--include-dashboard=false", f"--autoscaling-config={config}",
                   cpus=0, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        yield address, tmp, config
    finally:
        left = kill_started([tmp])
        named = [p for p in pids_naming(tmp) if p not in left]
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left and not named, f"processes left running: {left + named}"


def test_a_gpu_sweep_waits_for_the_autoscaler_and_finishes(autoscaling_cluster, tmp_path, tiny_trial_tree):
    address, tmp, config = autoscaling_cluster
    nodes = alive_nodes(address, tmp)
    assert [(n["cpu"], n["gpu"]) for n in nodes] == [(0, 0)], "the cluster must start from its 0-CPU head alone"
    head = nodes[0]["id"]
    spec = write_spec(tmp_path / "s.yaml", copy.deepcopy(tiny_trial_tree), resources={"cpu": 1, "gpu": 0.25},
                      ablation={"ce": {"lico.alpha": 0, "lico.beta": 0}, "lico": {}})
    out = lico_tune(["run", str(spec), "--address", address, "--storage", str(tmp_path / "res"), "--name", "z"],
                    tmp, timeout=420)
    assert out.returncode == 0, out.stdout[-5000:]
    assert ("waiting for the autoscaler to start a node with {CPU: 1, GPU: 0.25}: no node alive holds a trial "
            "yet; it may launch gpu_worker {CPU: 8, GPU: 1}.") in out.stdout
    assert "2 trials, 2 finished, 0 errored" in out.stdout
    # The autoscaler's events ("Adding 1 node(s) of type gpu_worker") stay in its log, not in this output.
    assert "autoscaler +" not in out.stdout and "Adding" not in out.stdout, out.stdout[-3000:]
    logs = "".join(p.read_text(errors="replace") for p in Path(tmp).glob("session_*/logs/monitor.log"))
    assert "Adding" in logs and "gpu_worker" in logs
    dirs = trial_dirs(tmp_path / "res" / "z")
    ran_on = {json.loads((d / "provenance.json").read_text())["node_id"] for d in dirs}
    assert len(dirs) == 2 and head not in ran_on, "the trials must run on nodes the autoscaler started"
    deadline = time.time() + 30            # the launched nodes report in Ray's node table
    while not {n["id"] for n in alive_nodes(address, tmp)} >= ran_on:
        assert time.time() < deadline, ran_on
        time.sleep(1)


def test_a_trial_no_node_type_holds_is_refused_naming_the_types(autoscaling_cluster, tmp_path, tiny_trial_tree):
    address, tmp, config = autoscaling_cluster
    spec = write_spec(tmp_path / "s.yaml", copy.deepcopy(tiny_trial_tree), resources={"cpu": 1, "gpu": 2})
    out = lico_tune(["run", str(spec), "--address", address, "--storage", str(tmp_path / "res"), "--name", "big"],
                    tmp, timeout=120)
    assert out.returncode == 2, out.stdout[-3000:]
    assert ("a trial asks for {CPU: 1, GPU: 2}, but no node of the Ray cluster holds that and no node type its "
            "autoscaler may launch could (gpu_worker {CPU: 8, GPU: 1} (max_workers 2); ray.head.default {CPU: 0} "
            f"(max_workers 0); read from {config})") in " ".join(out.stdout.split()), out.stdout
    assert "Traceback" not in out.stdout
    assert not (tmp_path / "res" / "big" / "lico_run.yaml").exists()


def test_autoscaler_v2_whose_monitor_is_not_here_means_waiting(tmp_path):
    """Ray's autoscaler v2 writes no status naming its monitor. Here its monitor stops at once (the
    fake provider's defaults file, example.yaml, is not in Ray's wheel), which is what a driver sees of
    a KubeRay autoscaler sidecar: the GCS says v2 runs, no monitor is found, so the node types are
    unknown and a run waits (and says why) instead of being refused."""
    tmp = private_tmpdir()
    port = free_port()
    config = tmp_path / "cluster.yaml"
    cfg = fake_cluster_config(f"127.0.0.1:{port}")
    cfg["provider"].update(launch_multiple=True, head_node_id=FAKE_HEAD_NODE_ID)   # as Ray's v2 tests do
    config.write_text(yaml.safe_dump(cfg))
    code = ("import ray; from lico_tune.tune.cluster import read_capacity; ray.init(address=%r, logging_level='ERROR');"
            " c = read_capacity(); print(c.autoscaler, c.node_types, c.notes)" % f"127.0.0.1:{port}")
    try:
        start_node(tmp, "--head", f"--port={port}", "--include-dashboard=false", f"--autoscaling-config={config}",
                   cpus=0, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_enable_autoscaler_v2="1",
                   RAY_CLOUD_INSTANCE_ID=FAKE_HEAD_NODE_ID, RAY_OVERRIDE_NODE_ID_FOR_TESTING=FAKE_HEAD_NODE_ID)
        out = subprocess.run([sys.executable, "-c", code], env=ray_env(tmp), capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip().splitlines()[-1] == ("True None [\"Ray's autoscaler v2 runs, and no monitor of it "
                                                      "serving this cluster was found on this machine\"]")
    finally:
        left = kill_started([tmp])
        named = [p for p in pids_naming(tmp) if p not in left]
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left and not named, f"processes left running: {left + named}"


# ----------------------------------------------------------------------------- capacity.py alone

def _plan(tree, smoke=False, **resources):
    spec = validate_spec({"name": "c", "base": copy.deepcopy(tree), "resources": resources})
    return plan_search(spec, name="c", storage="/tmp/unused", smoke=smoke)


def test_a_node_alive_that_holds_a_trial_is_enough(tiny_trial_tree):
    said = []
    cap = Capacity(nodes=[{"CPU": 0.0}, {"CPU": 8.0, "GPU": 1.0}], autoscaler=True, node_types=[])
    check_cluster_resources(_plan(tiny_trial_tree, cpu=2, gpu=0.5), cap, say=said.append)
    assert said == []


def test_without_an_autoscaler_the_refusal_names_the_largest_node(tiny_trial_tree):
    cap = Capacity(nodes=[{"CPU": 4.0}, {"CPU": 1.0, "GPU": 1.0}])
    with pytest.raises(SpecError, match=r"resources.cpu=2: the largest node of the Ray cluster has 1 CPU"):
        check_cluster_resources(_plan(tiny_trial_tree, cpu=2, gpu=1), cap, say=print)


def test_node_types_that_cannot_be_read_or_resources_detected_at_launch_wait(tiny_trial_tree):
    said = []
    unknown = Capacity(nodes=[{"CPU": 0.0}], autoscaler=True, notes=["its monitor is not a process of this machine"])
    check_cluster_resources(_plan(tiny_trial_tree, cpu=1, gpu=1), unknown, say=said.append)
    assert "its node types could not be read here: its monitor is not a process of this machine" in said[0]
    detected = Capacity(nodes=[], autoscaler=True, node_types=[NodeType("gpu_worker", {}, 8)], source="x.yaml")
    check_cluster_resources(_plan(tiny_trial_tree, cpu=1, gpu=1), detected, say=said.append)
    assert said[1].endswith("it may launch gpu_worker (resources detected at launch).")


def test_a_type_with_no_workers_to_launch_does_not_count(tiny_trial_tree):
    cap = Capacity(nodes=[], autoscaler=True, node_types=[NodeType("gpu", {"CPU": 8.0, "GPU": 1.0}, 0)], source="c")
    with pytest.raises(SpecError, match=r"gpu \{CPU: 8, GPU: 1\} \(max_workers 0\)"):
        check_cluster_resources(_plan(tiny_trial_tree, cpu=1, gpu=1), cap, say=print)


def test_a_smoke_test_on_a_cluster_without_any_gpu_runs_on_the_cpu(tiny_trial_tree):
    said = []
    plan = _plan(tiny_trial_tree, smoke=True, cpu=1, gpu=0.25)
    cap = Capacity(nodes=[{"CPU": 0.0}], autoscaler=True, node_types=[NodeType("cpu", {"CPU": 2.0}, 2)], source="c")
    check_cluster_resources(plan, cap, say=said.append)
    assert plan.spec.resources.gpu == 0 and plan.force["train.device"] == "cpu"
    assert "runs on the CPU instead" in said[0] and said[1].startswith("waiting for the autoscaler to start a node "
                                                                        "with {CPU: 1}")


def test_the_documented_one_machine_cluster_is_the_one_tested():
    """docs/cluster.md "Try the cluster on one machine": its config is this test's, and its commands
    name the options lico-tune and Ray take."""
    import re
    doc = (REPO / "docs" / "cluster.md").read_text()
    section = doc[doc.index("## Try the cluster on one machine"):]
    config = yaml.safe_load(re.search(r"<<'YAML'\n(.*?)\nYAML\n", section, re.S).group(1))
    port = config["provider"]["gcs_address"].rpartition(":")[2]
    assert config == fake_cluster_config(f"127.0.0.1:{port}")
    assert f"--port={port}" in section and f"--address 127.0.0.1:{port}" in section
    assert "RAY_FAKE_CLUSTER=1" in section and "--num-cpus=0" in section and "ray stop --force" in section
    assert "--set resources.gpu=0.25" in section and "python -m moto.server -H 127.0.0.1" in section
