"""Cluster recipes: the KubeRay RayJob (valid against the RayJob CRD schema of the KubeRay version
it names; its signing key readable by the image's user and accepted by lico-tune's key rule; its
spec path absolute), its Dockerfile (everything it copies exists; it installs this repository where the
entrypoint expects search_spaces/), ray_cluster.yaml (pinned image, an instance profile on every
node type) and the SLURM batch script (bash -n, shellcheck when installed, SQLite off NFS, the head's
IPv4 address); the
`lico-tune` command each one runs is accepted by lico-tune's own parser and names a spec that
validates, and the cluster commands of the docs (docs/cluster.md, the README's summary) match the recipes."""
import copy
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from lico_tune.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
RAYJOB = ROOT / "deploy" / "kuberay" / "rayjob.yaml"
PVC = ROOT / "deploy" / "kuberay" / "results-pvc.yaml"
SBATCH = ROOT / "deploy" / "slurm" / "lico-tune.sbatch"
DOCKERFILE = ROOT / "deploy" / "kuberay" / "Dockerfile"
CLUSTER = ROOT / "ray_cluster.yaml"
README = ROOT / "README.md"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"


def _check_command(argv: list[str], image_dir: str = "") -> None:
    """A recipe's lico-tune command parses and its spec validates; `image_dir`: where the image holds this
    repository (the spec path must be absolute under it)."""
    assert argv[0] == "lico-tune", argv
    args = build_parser().parse_args(argv[1:])          # argparse exits (SystemExit) on a bad flag
    if args.command == "run":
        spec = args.spec
        if image_dir:
            assert spec.startswith(image_dir + "/"), f"{spec}: not an absolute path under {image_dir}"
            spec = os.path.relpath(spec, image_dir)
        assert (ROOT / spec).is_file(), args.spec
        assert main(["validate", str(ROOT / spec)]) == 0


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
        (vol,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert vol["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        mounts = pod["containers"][0]["volumeMounts"]
        assert {"name": vol["name"], "mountPath": "/results"} in mounts
    # The head runs the driver, which signs Ray's state: its key comes from a Secret, owner-only,
    # outside the results volume, where LICO_TUNE_KEY_FILE points.
    from lico_tune.layout import KEY_ENV
    head = pods[0]
    (key,) = [v for v in head["volumes"] if "secret" in v]
    _key_is_read_by_the_image_user(key["secret"]["defaultMode"], head["securityContext"])
    (mount,) = [m for m in head["containers"][0]["volumeMounts"] if m["name"] == key["name"]]
    assert mount.get("readOnly") is True and not mount["mountPath"].startswith("/results")
    env = {e["name"]: e["value"] for e in head["containers"][0]["env"]}
    assert os.path.dirname(env[KEY_ENV]) == mount["mountPath"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["lico-tune", "run"] and argv[argv.index("--storage") + 1] == "/results"
    _check_command(argv, image_dir=head["containers"][0]["workingDir"])   # Ray runs it elsewhere: absolute


def _key_is_read_by_the_image_user(mode: int, security: dict) -> None:
    """The Secret as Kubernetes mounts it (root-owned, group fsGroup, `mode`), made for real here, is
    readable by the pod's user through its group and passes lico-tune's key rule (keyfile.py) for
    that user in those groups; the same key readable by everyone would not."""
    from lico_tune.trust.keyfile import key_file_problem
    user = re.findall(r"^USER (\d+)", DOCKERFILE.read_text(), re.M)[-1]
    assert security["runAsUser"] == int(user), "the pod runs as the image's user"
    assert mode & 0o040 and not mode & 0o007, f"mode {mode:o}: the image's user reads the key by its group only"
    uid, groups = security["runAsUser"], {security["runAsGroup"], security["fsGroup"]}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "manifest.key")
        Path(path).write_text("a" * 64)
        if os.geteuid() == 0:
            os.chown(path, 0, security["fsGroup"])
        os.chmod(path, mode)
        st = os.stat(path)
        owner_gid = (0, security["fsGroup"]) if os.geteuid() == 0 else (st.st_uid, st.st_gid)
        assert (st.st_uid, st.st_gid) == owner_gid
        uid = uid if os.geteuid() == 0 else st.st_uid      # not root: the file stays this user's
        assert key_file_problem(st, uid=uid, groups=groups | {st.st_gid}) is None
        os.chmod(path, mode | 0o004)
        assert "other users" in key_file_problem(os.stat(path), uid=uid, groups=groups | {st.st_gid})


def test_sbatch_is_valid_bash_and_runs_lico_tune_against_its_ray_head():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    text = SBATCH.read_text()
    assert re.search(r"^#SBATCH --nodes=\d+", text, re.M) and "--gpus-per-task" in text
    assert "ray start --head" in text and 'ray start --address="$address"' in text
    default_spec = re.search(r"^SPEC=\$\{SPEC:-(\S+)\}", text, re.M).group(1)
    joined = text.replace("\\\n", " ")                  # continuation lines
    lines = [ln.split("|| status")[0].strip() for ln in joined.splitlines() if ln.strip().startswith("lico-tune ")]
    assert {ln.split()[1] for ln in lines} == {"run", "resume"}
    for line in lines:
        filled = (line.replace('"$SPEC"', default_spec).replace('"$address"', "10.0.0.1:6379")
                  .replace('"$RESULTS"', "/shared/results").replace('"$NAME"', "n")
                  .replace('"$RESUME"', "/shared/results/n")
                  .replace('"$OPTUNA_STORAGE"', "sqlite:////tmp/lico-tune-u/optuna-n.db"))
        _check_command(shlex.split(filled))


# The RayJob fields of KubeRay v1.7.0 at the levels rayjob.yaml uses, with their types, written down by
# hand from that release's CRD (ray-operator/config/crd/bases/ray.io_rayjobs.yaml): the CRD itself is
# not kept here. Pod templates are Kubernetes' PodTemplateSpec, checked by Kubernetes, not by KubeRay.
KUBERAY_VERSION = "v1.7.0"
_T = {"i": "integer", "s": "string", "b": "boolean", "o": "object", "a": "array", "n": "number"}


def _obj(fields: str, required: tuple = ()) -> dict:
    """A strict object schema (as `kubectl apply` with field validation Strict) from 'name:t ...'."""
    props = dict(f.split(":") for f in fields.split())
    return {"type": "object", "additionalProperties": False, "required": list(required),
            "properties": {k: {"type": _T[t]} for k, t in props.items()}}


def _rayjob_schema() -> dict:
    spec = _obj("activeDeadlineSeconds:i backoffLimit:i clusterSelector:o deletionStrategy:o entrypoint:s "
                "entrypointNumCpus:n entrypointNumGpus:n entrypointResources:s jobId:s managedBy:s metadata:o "
                "preRunningDeadlineSeconds:i rayClusterSpec:o runtimeEnvYAML:s shutdownAfterJobFinishes:b "
                "submissionMode:s submitterConfig:o submitterPodTemplate:o suspend:b ttlSecondsAfterFinished:i")
    cluster = _obj("authOptions:o autoscalerOptions:o enableInTreeAutoscaling:b gcsFaultToleranceOptions:o "
                   "headGroupSpec:o headServiceAnnotations:o historyServerOptions:o managedBy:s networkPolicy:o "
                   "rayVersion:s suspend:b tlsOptions:o upgradeStrategy:o workerGroupSpecs:a")
    cluster["properties"]["autoscalerOptions"] = _obj(
        "args:a command:a env:a envFrom:a idleTimeoutSeconds:i image:s imagePullPolicy:s resources:o "
        "securityContext:o upscalingMode:s version:s volumeMounts:a")
    cluster["properties"]["headGroupSpec"] = _obj(
        "enableIngress:b headService:o ingressOptions:o labels:o rayStartParams:o resources:o serviceType:s "
        "template:o", required=("template",))
    cluster["properties"]["workerGroupSpecs"]["items"] = _obj(
        "groupName:s idleTimeoutSeconds:i labels:o maxReplicas:i minReplicas:i numOfHosts:i priority:i "
        "rayStartParams:o replicas:i resources:o scaleStrategy:o suspend:b template:o",
        required=("groupName", "maxReplicas", "minReplicas", "template"))
    spec["properties"]["rayClusterSpec"] = cluster
    top = _obj("apiVersion:s kind:s metadata:o spec:o")
    top["properties"]["spec"] = spec
    return top


def test_rayjob_is_valid_against_the_rayjob_fields_of_the_kuberay_version_it_names():
    import jsonschema
    text = RAYJOB.read_text()
    version = re.search(r"Written for KubeRay\s+(v\d+\.\d+\.\d+)", text.replace("#", " ")).group(1)
    assert version == KUBERAY_VERSION
    schema = _rayjob_schema()
    job = yaml.safe_load(text)
    jsonschema.Draft7Validator(schema).validate(job)
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert "backoffLimit" in job["spec"]  # a RayJob field since KubeRay v1.2
    bad = copy.deepcopy(job)                    # the check can fail: a misspelt field is refused
    bad["spec"]["shutdownAfterJobFinish"] = bad["spec"].pop("shutdownAfterJobFinishes")
    with pytest.raises(jsonschema.ValidationError, match="shutdownAfterJobFinish"):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(job)
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 8
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        jsonschema.validate(bad, schema)


def _dockerfile_copies() -> list[tuple[list[str], str]]:
    out = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            parts = [p for p in shlex.split(line)[1:] if not p.startswith("--")]
            out.append((parts[:-1], parts[-1]))
    return out


def test_the_dockerfile_installs_this_repository_where_the_rayjob_expects_it():
    text = DOCKERFILE.read_text()
    import ray
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert base == f"rayproject/ray:{ray.__version__}-py311-gpu"
    job = yaml.safe_load(RAYJOB.read_text())
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__
    workdir = re.findall(r"^WORKDIR (\S+)", text, re.M)[-1]
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    assert {p["containers"][0]["workingDir"] for p in pods} == {workdir}
    images = {p["containers"][0]["image"] for p in pods}
    assert len(images) == 1 and not images.pop().endswith(":latest")
    ignored = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    copied = []
    for sources, _dest in _dockerfile_copies():          # the build context is the repository root
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            assert not any(src.rstrip("/") == i.rstrip("/") for i in ignored), f"{src} is in .dockerignore"
            copied.append(src.rstrip("/"))
    assert {"pyproject.toml", "setup.py", "lico_tune", "search_spaces", "dashboards"} <= set(copied)
    assert re.search(r'pip install [^\n]*-e "\.\[tune,saliency\]"', text), "installs this checkout"
    assert "pip install lico-tune" not in text and '"lico-tune[' not in text, "lico-tune is not on PyPI"
    argv = shlex.split(job["spec"]["entrypoint"])
    spec = os.path.relpath(argv[2], workdir)
    assert (ROOT / spec).is_file() and spec.split("/")[0] in copied   # the spec is in the image


def test_ray_cluster_yaml_pins_its_image_and_gives_every_node_type_an_instance_profile():
    import ray
    cfg = yaml.safe_load(CLUSTER.read_text())
    image = cfg["docker"]["image"]
    assert image == f"rayproject/ray:{ray.__version__}-py311-gpu", image     # Python 3.11, CUDA 12
    for name, node in cfg["available_node_types"].items():
        nc = node["node_config"]
        assert nc["IamInstanceProfile"].get("Name") or nc["IamInstanceProfile"].get("Arn"), name
        assert nc["ImageId"] not in ("", "latest_dlami"), f"{name}: latest_dlami is an Ubuntu 18.04 / CUDA 11.2 AMI"
        assert "ubuntu-22.04" in nc["ImageId"] or nc["ImageId"].startswith("ami-"), nc["ImageId"]
    assert not any("ray[" in c for c in cfg["setup_commands"]), "Ray comes with the pinned image"


def test_the_documented_cluster_commands_match_the_recipes():
    text = CLUSTER_DOC.read_text()
    section = text[text.index("## On a cluster"):text.index("## Experiment trackers")]
    submits = re.findall(r"ray job submit[^\n]*", section) + re.findall(r"ray job submit[^\n]*", README.read_text())
    assert submits and all("--working-dir ." in s for s in submits), submits
    assert "for role in lico-tune-head lico-tune-worker; do" in section and "create-instance-profile" in section
    cfg = yaml.safe_load(CLUSTER.read_text())
    assert {n["node_config"]["IamInstanceProfile"]["Name"] for n in cfg["available_node_types"].values()} == \
        {"lico-tune-head", "lico-tune-worker"}
    assert "docker build -f deploy/kuberay/Dockerfile" in section and "docker build -f deploy/kuberay/Dockerfile" \
        in DOCKERFILE.read_text()
    assert 'pip install "lico-tune[' not in section


@pytest.mark.parametrize("addresses, picked", [
    ("fe80::1c2:3ff:fe4d:5e6f 2001:db8::5 10.1.2.3 172.17.0.1", "10.1.2.3"),   # IPv6 listed first
    ("127.0.1.1 192.168.0.7", "192.168.0.7"),                                  # Debian's hosts entry
    ("fe80::1 ::1", ""),                                                       # none: the script stops
])
def test_sbatch_picks_the_head_ipv4_address(addresses, picked):
    text = SBATCH.read_text()
    assert "hostname --ip-address | awk '{print $1}'" not in text
    (func,) = re.findall(r"^first_ipv4\(\) \{.*\}$", text, re.M)
    assert re.search(r'^head_ip=\$\{HEAD_IP:-\$\(srun [^\n]*hostname --all-ip-addresses \| first_ipv4\)\}$', text, re.M)
    assert re.search(r'^if \[ -z "\$head_ip" \]; then\n[^\n]*\n  exit 2$', text, re.M)
    out = subprocess.run(["bash", "-c", f"set -euo pipefail; {func}; first_ipv4"], input=addresses + "\n",
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == picked, out.stderr


def test_sbatch_keeps_sqlite_off_the_shared_filesystem_and_passes_shellcheck():
    text = SBATCH.read_text()
    assert re.search(r"^export LICO_TUNE_CATALOG=\$\{LICO_TUNE_CATALOG:-sqlite:///\$DB_DIR/", text, re.M)
    assert 'search.optuna_storage="$OPTUNA_STORAGE"' in text and "OPTUNA_STORAGE:-sqlite:///$DB_DIR/" in text
    assert "RESULTS" not in re.search(r"^DB_DIR=.*$", text, re.M).group(0)
    assert shutil.which("shellcheck"), "shellcheck is not installed: `make test` installs it (apt-get install shellcheck)"
    out = subprocess.run(["shellcheck", "-s", "bash", str(SBATCH)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
