"""What the Ray cluster this driver joined can provide (plan/capacity.py decides what that means for
a spec): the nodes alive, and whether an autoscaler may start more and of which node types.

Ray 2.60 publishes no node types to a driver: its autoscaler (`monitor.py`, on the head) reads the
cluster config file it was started with (`ray up`: ~/ray_bootstrap_config.yaml; `ray start --head
--autoscaling-config=FILE`) and writes only its status to the GCS (v1: `__autoscaling_status`, the
active and pending nodes and the monitor's PID; v2 not even its PID). So the node types are read
from that file, found through the PID the status names (v2: among this machine's processes), when
the monitor is a process of this machine (a driver on the head: `ray job submit`, or `--address
auto` there) serving this cluster's GCS. A monitor without a config file is Ray's read-only one
(every `ray start --head`): no autoscaler. A status whose monitor this machine cannot see (a KubeRay
autoscaler sidecar, another PID namespace), or autoscaler v2 without a monitor here, means an
autoscaler whose node types are unknown here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import ray
import yaml
from ray._private import ray_constants
from ray.experimental.internal_kv import _internal_kv_get

from ..plan.capacity import Capacity, NodeType


def read_capacity() -> Capacity:
    """The cluster this process joined (ray.init done)."""
    cap = Capacity(nodes=[dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")])
    port = ray.get_runtime_context().gcs_address.rpartition(":")[2]
    pid = _status_monitor_pid()
    args = _monitor_args(pid, port) if pid is not None else _find_monitor(port)
    if args is None:
        if pid is not None:
            cap.autoscaler = True
            cap.notes.append(f"its monitor (PID {pid} in the cluster's autoscaler status) is not a process of "
                             f"this machine")
        elif _autoscaler_v2():
            cap.autoscaler = True
            cap.notes.append("Ray's autoscaler v2 runs, and no monitor of it serving this cluster was found on "
                             "this machine")
        return cap                                   # else: no monitor reports to this cluster
    config = args.get("--autoscaling-config")
    if not config:
        return cap                                   # Ray's read-only monitor: the nodes are all there is
    cap.autoscaler = True
    path = Path(config).expanduser()
    try:
        cap.node_types = node_types(yaml.safe_load(path.read_text()))
        cap.source = str(path)
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError) as exc:
        cap.notes.append(f"its config {path} could not be read ({type(exc).__name__}: {exc})")
    return cap


def _status_monitor_pid() -> Optional[int]:
    """The monitor's PID in the autoscaler status that Ray's autoscaler v1 writes to the GCS."""
    status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    try:
        return int(json.loads(status)["monitor_pid"]) if status else None
    except (KeyError, TypeError, ValueError):
        return None


def _autoscaler_v2() -> bool:
    from ray.autoscaler.v2.utils import is_autoscaler_v2   # its protobufs: only when it may matter
    return is_autoscaler_v2(fetch_from_server=True)


MONITORS = (os.path.join("autoscaler", "_private", "monitor.py"), os.path.join("autoscaler", "v2", "monitor.py"))


def _monitor_args(pid: int, gcs_port: str) -> Optional[dict[str, str]]:
    """The --key=value arguments of Ray's autoscaler monitor `pid` (v1 or v2) when it is a process of
    this machine serving the GCS on `gcs_port`; None otherwise."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if not any(a.endswith(MONITORS) for a in argv):
        return None
    args = dict(a.split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    return args if args.get("--gcs-address", "").rpartition(":")[2] == gcs_port else None


def _find_monitor(gcs_port: str) -> Optional[dict[str, str]]:
    """The arguments of this cluster's monitor among this machine's processes (autoscaler v2 writes no
    status naming its PID)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (args := _monitor_args(int(entry.name), gcs_port)) is not None:
            return args
    return None


def node_types(config: dict) -> list[NodeType]:
    """The node types of a Ray cluster config (`available_node_types`); the head's launches nothing."""
    head = config.get("head_node_type")
    default_max = int(config.get("max_workers", 0) or 0)
    types = []
    for name, t in (config.get("available_node_types") or {}).items():
        resources = {k: float(v) for k, v in (t.get("resources") or {}).items()}
        types.append(NodeType(name, resources, 0 if name == head else int(t.get("max_workers", default_max))))
    return types
