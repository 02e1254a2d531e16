"""Make tests/data/kuberay-<version>-rayjob.schema.json from KubeRay's RayJob CRD.

    python scripts/prune_rayjob_crd.py ray.io_rayjobs.yaml v1.7.0 > tests/data/kuberay-v1.7.0-rayjob.schema.json

The CRD (github.com/ray-project/kuberay, ray-operator/config/crd/bases/ray.io_rayjobs.yaml at the
release tag; Apache License 2.0) is 1.4 MB, almost all of it Kubernetes' PodTemplateSpec schema
repeated for every pod template. This keeps the openAPIV3Schema of version v1 with every pod
template (`template`, `submitterPodTemplate`) made an opaque object, the status left out and
descriptions cut to their first line: what tests/test_deploy.py validates rayjob.yaml against.
"""
import json
import sys

import yaml

OPAQUE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
          "description": "(pruned by lico-tune: a Kubernetes PodTemplateSpec; its schema is Kubernetes', not KubeRay's)"}


def prune(node, path=()):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "description" and isinstance(v, str):
                out[k] = v.split("\n")[0][:200]
            elif path and path[-1] == "properties" and k in ("template", "submitterPodTemplate") and isinstance(v, dict):
                out[k] = OPAQUE
            else:
                out[k] = prune(v, path + (k,))
        return out
    if isinstance(node, list):
        return [prune(x, path) for x in node]
    return node


def main(crd_file: str, tag: str) -> None:
    crd = yaml.safe_load(open(crd_file))
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = prune(v1["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    doc = {"$comment": (f"The openAPIV3Schema of version v1 of the RayJob CRD of KubeRay {tag} "
                        f"(github.com/ray-project/kuberay, ray-operator/config/crd/bases/ray.io_rayjobs.yaml, "
                        f"Apache License 2.0, Copyright the KubeRay authors), with every PodTemplateSpec "
                        f"(template, submitterPodTemplate) replaced by an opaque object and descriptions cut to "
                        f"their first line, by lico-tune for tests/test_deploy.py."), **schema}
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
