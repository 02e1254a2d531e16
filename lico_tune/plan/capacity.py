"""Does a trial fit the cluster it joins (`run --address`)? No Ray import: tune/cluster.py reads the
cluster (the nodes alive, and the node types its autoscaler may launch) into a `Capacity`.

- No node fits and there is no autoscaler: refused at once, as on one machine (preflight.check_resources).
- No node fits yet, but a node type of the autoscaler would: the sweep starts, and the user is told
  it waits for the autoscaler to start such a node (the recipes' clusters start with a 0-CPU head
  and GPU workers from zero, so at start nothing fits).
- No node type could ever hold a trial: refused, naming every type and its resources.
- An autoscaler whose node types cannot be read here (e.g. a KubeRay sidecar in another PID
  namespace), or a type whose resources are detected only at launch (`resources: {}` on AWS): the
  sweep starts and waits; the notice says what could not be checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import SpecError
from .cells import Plan
from .preflight import check_resources


@dataclass
class NodeType:
    name: str
    resources: dict[str, float]       # empty: detected when a node starts (e.g. from its instance type)
    max_workers: int


@dataclass
class Capacity:
    nodes: list[dict[str, float]]                      # each alive node's total resources
    autoscaler: bool = False                           # an autoscaler may start more nodes
    node_types: Optional[list[NodeType]] = None        # what it may launch; None: could not be read
    source: str = ""                                   # where the node types were read
    notes: list[str] = field(default_factory=list)


def request(plan: Plan) -> dict[str, float]:
    """One trial's resources, as Ray names them (no GPU entry when it asks for none)."""
    res = plan.spec.resources
    return {"CPU": float(res.cpu), **({"GPU": float(res.gpu)} if res.gpu else {})}


def fits(resources: dict[str, float], want: dict[str, float]) -> bool:
    return all(float(resources.get(k, 0)) >= v for k, v in want.items() if v > 0)


def shown(resources: dict[str, float]) -> str:
    keys = [k for k in ("CPU", "GPU") if k in resources] + sorted(
        k for k in resources if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:"))
    return "{" + ", ".join(f"{k}: {float(resources[k]):g}" for k in keys) + "}" if keys else "{}"


def _largest(nodes: list[dict[str, float]], want: dict[str, float]) -> dict[str, float]:
    """The node that comes closest to `want` (GPUs first, then CPUs): the one today's message names."""
    if not nodes:
        return {"CPU": 0.0, "GPU": 0.0}
    return max(nodes, key=lambda r: (min(float(r.get("GPU", 0)), want.get("GPU", 0.0)), float(r.get("CPU", 0))))


def check_cluster_resources(plan: Plan, cap: Capacity, say: Callable[[str], None] = print) -> None:
    """Refuse (SpecError) a trial that no node alive holds and no node type of the autoscaler could
    hold; print what the sweep waits for when only a node the autoscaler may start would hold it."""
    want = request(plan)
    if any(fits(n, want) for n in cap.nodes):
        return
    if not cap.autoscaler:
        check_resources(plan, _largest(cap.nodes, want), where="the largest node of the Ray cluster", say=say)
        return
    if cap.node_types is None:
        say(f"waiting for the autoscaler to start a node with {shown(want)} (no node alive holds a trial; its node "
            f"types could not be read here{': ' + '; '.join(cap.notes) if cap.notes else ''}, so whether one can "
            f"is not checked; `ray status` on the head shows what it does).")
        return
    could = [t for t in cap.node_types if t.max_workers > 0 and (not t.resources or fits(t.resources, want))]
    if not could and plan.smoke and want.get("GPU") and not any(t.resources.get("GPU") for t in cap.node_types):
        # --smoke-test on a cluster without any GPU: the trials run on the CPU (check_resources says so)
        check_resources(plan, {"CPU": float("inf"), "GPU": 0.0}, where="the Ray cluster", say=say)
        return check_cluster_resources(plan, cap, say)
    if not could:
        types = "; ".join(f"{t.name} {shown(t.resources)} (max_workers {t.max_workers})" for t in cap.node_types)
        raise SpecError(f"resources: a trial asks for {shown(want)}, but no node of the Ray cluster holds that and no "
                        f"node type its autoscaler may launch could ({types}; read from {cap.source}), so every "
                        f"trial would wait forever. Lower resources.gpu / resources.cpu (--set resources.gpu=...), or "
                        f"add a node type that holds a trial to the cluster's config.")
    names = ", ".join(f"{t.name} {shown(t.resources) if t.resources else '(resources detected at launch)'}"
                      for t in could)
    say(f"waiting for the autoscaler to start a node with {shown(want)}: no node alive holds a trial yet; "
        f"it may launch {names}.")
