"""Cluster recipes: the KubeRay RayJob and the SLURM batch script parse, and the `lico-tune`
command each one runs is accepted by lico-tune's own parser and names a spec that validates."""
import re
import shlex
import subprocess
from pathlib import Path

import yaml

from lico_tune.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
RAYJOB = ROOT / "deploy" / "kuberay" / "rayjob.yaml"
PVC = ROOT / "deploy" / "kuberay" / "results-pvc.yaml"
SBATCH = ROOT / "deploy" / "slurm" / "lico-tune.sbatch"


def _check_command(argv: list[str]) -> None:
    assert argv[0] == "lico-tune", argv
    args = build_parser().parse_args(argv[1:])          # argparse exits (SystemExit) on a bad flag
    if args.command == "run":
        assert (ROOT / args.spec).is_file(), args.spec
        assert main(["validate", str(ROOT / args.spec)]) == 0


def test_rayjob_is_a_kuberay_rayjob_with_gpu_workers_from_zero_and_shared_results():
    job = yaml.safe_load(RAYJOB.read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    import ray
    assert cluster["rayVersion"] == ray.__version__, "rayVersion must match the Ray lico-tune is tested with"
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["minReplicas"] == 0 and gpu["replicas"] == 0 and gpu["maxReplicas"] >= 1
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    claim = yaml.safe_load(PVC.read_text())
    assert claim["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in claim["spec"]["accessModes"]
    pods = [cluster["headGroupSpec"]["template"]["spec"], gpu["template"]["spec"]]
    for pod in pods:                                      # every pod mounts the one results volume
        (vol,) = pod["volumes"]
        assert vol["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        mounts = pod["containers"][0]["volumeMounts"]
        assert {"name": vol["name"], "mountPath": "/results"} in mounts
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["lico-tune", "run"] and argv[argv.index("--storage") + 1] == "/results"
    _check_command(argv)


def test_sbatch_is_valid_bash_and_runs_lico_tune_against_its_ray_head():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    text = SBATCH.read_text()
    assert re.search(r"^#SBATCH --nodes=\d+", text, re.M) and "--gpus-per-task" in text
    assert "ray start --head" in text and 'ray start --address="$address"' in text
    default_spec = re.search(r"^SPEC=\$\{SPEC:-(\S+)\}", text, re.M).group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("lico-tune ")]
    assert {ln.split()[1] for ln in lines} == {"run", "resume"}
    for line in lines:
        filled = (line.replace('"$SPEC"', default_spec).replace('"$address"', "10.0.0.1:6379")
                  .replace('"$RESULTS"', "/shared/results").replace('"$NAME"', "n")
                  .replace('"$RESUME"', "/shared/results/n"))
        _check_command(shlex.split(filled))
