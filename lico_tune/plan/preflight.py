"""Checks made before any trial starts, so that `lico-tune run` fails in seconds, not hours.

- `check_resources`: a trial's `resources` must fit one node of the cluster. A GPU on a CPU-only
  machine (or more CPUs than it has) would leave every trial PENDING forever; it is refused
  naming the fix (`--set resources.gpu=0`). With `--smoke-test` a GPU spec on a machine without a
  GPU runs on the CPU instead, with a printed notice. Called with this machine's resources before
  Ray starts (local runs) and with `ray.cluster_resources()` after joining a cluster.
- `check_new_experiment`: `run` never writes into an existing experiment: a directory that is not
  empty (its lock file aside) is refused, naming `lico-tune resume` and --name.
- `check_inputs`: every dataset and text-encoder weight file the trials need is found on this
  machine, with the same errors as `lico-tune train`, or, where the spec lets trials download it
  (`data.download: true`, an open_clip `pretrained` tag such as `openai`), can be downloaded now:
  one request with a short timeout per URL (fetchable.py), so that an offline machine is told in
  seconds (local runs; on a cluster the workers' disks count and are not checked here). Each
  dataset and text encoder says what it needs (its registry row's `require`); this module asks.
Raises SpecError (the CLI exits 2). No Ray import.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from ..errors import SpecError
from .cells import Plan


def local_resources() -> dict[str, float]:
    """{'CPU': n, 'GPU': n} of this machine, as a local Ray would see it."""
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(_gpu_count())}


def _gpu_count() -> int:
    """CUDA devices, without importing torch when it is not loaded yet (seconds on a busy machine):
    the NVIDIA driver lists one folder per GPU, narrowed by CUDA_VISIBLE_DEVICES as CUDA would."""
    if "torch" in sys.modules:
        return sys.modules["torch"].cuda.device_count()
    gpus = Path("/proc/driver/nvidia/gpus")
    n = len(list(gpus.iterdir())) if gpus.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        n = min(n, len([v for v in visible.split(",") if v.strip() and not v.strip().startswith("-")]))
    return n


def check_resources(plan: Plan, available: dict[str, float], where: str = "this machine",
                    say: Callable[[str], None] = print) -> None:
    res = plan.spec.resources
    gpus, cpus = float(available.get("GPU", 0)), float(available.get("CPU", 0))
    if res.gpu > gpus:
        if plan.smoke and gpus == 0:
            say(f"notice: the spec asks for resources.gpu={res.gpu:g} but {where} has no GPU; the smoke "
                f"test runs on the CPU instead (resources.gpu=0, train.device cpu).")
            spec = plan.spec.model_copy(deep=True)
            spec.resources.gpu = 0.0
            plan.spec = spec
            plan.force = {**plan.force, "train.device": "cpu"}
        else:
            have = "no GPU" if gpus == 0 else f"{gpus:g} GPU(s)"
            raise SpecError(f"resources.gpu={res.gpu:g}: {where} has {have}, so every trial would wait for one "
                            f"forever. Run with --set resources.gpu=0 (trials train on the CPU), or join a "
                            f"cluster with GPUs (--address).")
    device = plan.spec.base.train.device
    if device.startswith("cuda") and gpus == 0 and plan.force.get("train.device") != "cpu":
        raise SpecError(f"train.device={device}: {where} has no GPU. Run with --set train.device=auto "
                        f"(CUDA when there is one) or --set train.device=cpu.")
    if res.cpu > cpus:
        raise SpecError(f"resources.cpu={res.cpu:g}: {where} has {cpus:g} CPU(s), so no trial could start. "
                        f"Run with --set resources.cpu={max(1, int(cpus))} or less, or join a larger cluster (--address).")


def _distinct_trials(plan: Plan):
    """One resolved config per distinct (data, text) section among the plan's cells."""
    seen = set()
    for cfg in plan.cell_configs:
        key = json.dumps([cfg.data.model_dump(mode="json"), cfg.text.model_dump(mode="json")], sort_keys=True)
        if key not in seen:
            seen.add(key)
            yield cfg


def check_inputs(plan: Plan) -> None:
    """Every dataset and text-encoder weight file of the plan's cells exists here."""
    from ..data import DatasetMissing
    from ..models import TextEncoderMissing
    for cfg in _distinct_trials(plan):
        try:
            check_data(cfg.data)
            check_text(cfg.text)
        except (DatasetMissing, TextEncoderMissing) as exc:
            raise SpecError(f"{exc} (checked before starting any trial; every trial needs it)") from None


def check_data(data) -> None:
    """The dataset answers for itself (its registry row's `require`): here, or downloadable now."""
    from ..data.registry import REGISTRY
    from .fetchable import answer
    REGISTRY[data.name].require(data, answer)


def check_text(text) -> None:
    """The text encoder answers for itself (models/text ENCODERS' `require`): its weights here, or
    downloadable now."""
    from ..models.text import ENCODERS
    from .fetchable import answer
    ENCODERS[text.encoder].require(text, answer)


def check_new_experiment(plan: Plan) -> None:
    """Refuse (OutputExists) to run into an experiment directory that already holds anything: its
    results would be mixed with the new run's and its summary replaced. Checked before Ray starts
    and again under the experiment's lock (two `run --name X` started at once)."""
    from ..errors import OutputExists
    from ..layout import LOCK_FILE, RUN_FILE
    from ..storage import Storage
    path = plan.experiment_path
    names = [e.name for e in Storage(path).list(path) if e.name != LOCK_FILE]
    if not names:
        return
    what = (f"holds an experiment ({len(names)} entries, {RUN_FILE} among them)" if RUN_FILE in names else
            f"is not empty ({len(names)} entries, e.g. {sorted(names)[0]})")
    raise OutputExists(f"{path} already {what}; `lico-tune run` never writes into an existing experiment, so "
                       f"nothing was changed. To continue that experiment: `lico-tune resume {path}`. For a new "
                       f"one: another --name, or leave out --name for a new stamped name "
                       f"({plan.spec.name}_<date>_<time>).")


def preflight(plan: Plan, address: Optional[str], say: Callable[[str], None] = print) -> None:
    """The checks `run` makes before Ray starts (the experiment is new; local runs: resources and input files)."""
    check_new_experiment(plan)
    if address or os.environ.get("RAY_ADDRESS"):
        return                                   # checked against the cluster once joined
    check_resources(plan, local_resources(), say=say)
    check_inputs(plan)


def check_plan(experiment_dir: str) -> str:
    """The experiment directory (normalised) when it holds a readable plan; SpecError otherwise."""
    return Plan.load(experiment_dir).experiment_path


def check_resume(experiment_dir: str) -> None:
    """What `resume` checks before Ray starts: the directory holds a readable plan, and the files Ray
    will unpickle are the ones this user's lico-tune signed (lico_tune/trust)."""
    from ..trust import verify_experiment
    verify_experiment(check_plan(experiment_dir))
