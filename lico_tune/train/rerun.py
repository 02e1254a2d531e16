"""`lico-tune rerun TRIAL_DIR`: retrain one trial from its record into a fresh directory and say
whether it matches, bit for bit.

A record is either a `lico-tune train` output directory (checkpoint.pt holds the resolved trial
config and every epoch's metrics) or a Ray Tune trial directory (trial_spec.yaml, the resolved
config the trainable wrote, and checkpoint_NNNNNN/checkpoint.pt). The rerun trains the same
config up to the epoch of the recorded checkpoint (a trial a scheduler stopped early is cut at
the same epoch: the learning-rate schedule still spans train.epochs), then compares every tensor
of the two checkpoints (model, optimiser, scheduler, EMA, RNG state) with torch.equal and every
metric of every epoch with ==, except wall-clock ones (images/s, seconds). A published copy of a
Ray trial without its weights (metrics.json but no checkpoint.pt, e.g. docs/study/2026-12-01_32-steps/results) is a
metrics-only record: every metric of every epoch is compared, no tensor.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import BadInput, OutputExists
from ..layout import CHECKPOINT_DIR_PREFIX, CHECKPOINT_FILE as CHECKPOINT_NAME, METRICS_FILE, TRIAL_SPEC
from ..spec import TrialConfig, saved_trial
from ..spec.safe_yaml import read_file as read_yaml
from .checkpoint import CheckpointError, load_checkpoint

TIMING = ("images_per_s", "seconds")    # metric name endings that measure wall-clock time
SKIP = ("config", "class_names", "lico_tune_version", "git_sha", "git_dirty", "git_changes", "environment")


class RecordError(BadInput, ValueError):
    """A directory that is not a trial record (no checkpoint, no config)."""


@dataclass
class Record:
    config: TrialConfig
    checkpoint: Path                    # metrics.json for a metrics-only record
    epoch: int
    kind: str                           # 'train', 'ray' or 'ray metrics-only' (no weights: metrics compared)
    state: dict = field(repr=False, default_factory=dict)

    @property
    def metrics_only(self) -> bool:
        return self.kind.endswith("metrics-only")


@dataclass
class Comparison:
    tensors: int = 0
    metrics: int = 0
    tensor_diffs: list[str] = field(default_factory=list)     # "name: max |diff| x" or "name: shape ..."
    metric_diffs: list[str] = field(default_factory=list)
    state_diffs: list[str] = field(default_factory=list)      # other numbers: epoch, step, lr...

    @property
    def match(self) -> bool:
        return not self.tensor_diffs and not self.metric_diffs and not self.state_diffs


def find_record(trial_dir: str | Path) -> Record:
    d = Path(trial_dir).expanduser()
    if not d.is_dir():
        raise RecordError(f"{d}: no such directory. Pass a `lico-tune train` output directory (holding "
                          f"{CHECKPOINT_NAME}) or a Ray Tune trial directory (holding {TRIAL_SPEC}).")
    if (d / CHECKPOINT_NAME).is_file():
        state = load_checkpoint(d / CHECKPOINT_NAME)
        if "config" not in state:
            raise RecordError(f"{d / CHECKPOINT_NAME} holds no trial config: it was not written by lico-tune train.")
        return Record(TrialConfig.model_validate(saved_trial(state["config"])), d / CHECKPOINT_NAME, int(state["epoch"]), "train",
                      state)
    if (d / TRIAL_SPEC).is_file():
        ckpts = sorted(p for p in d.glob(f"{CHECKPOINT_DIR_PREFIX}*") if (p / CHECKPOINT_NAME).is_file())
        if ckpts:
            path, kind = ckpts[-1] / CHECKPOINT_NAME, "ray"
            state = load_checkpoint(path)
        elif (d / METRICS_FILE).is_file():       # a copy without weights: compare the metrics only
            path, kind = d / METRICS_FILE, "ray metrics-only"
            try:
                final = json.loads(path.read_text())
                state = {"epoch": final["epoch"], "history": final["history"], "environment": final.get("environment")}
            except (ValueError, KeyError, TypeError) as exc:
                raise RecordError(f"{path} is damaged ({type(exc).__name__}: {exc}); restore it from the "
                                  f"experiment it was copied from.") from None
        else:
            raise RecordError(f"{d} has {TRIAL_SPEC} but neither checkpoint_*/{CHECKPOINT_NAME} nor {METRICS_FILE}: "
                              f"the trial saved no epoch (it failed or was stopped before its first report); "
                              f"nothing to compare.")
        try:
            cfg = TrialConfig.model_validate(saved_trial(read_yaml(d / TRIAL_SPEC)))   # with the spec's limits
        except ValueError as exc:
            raise RecordError(f"{d / TRIAL_SPEC} is not a valid trial config ({str(exc).splitlines()[0]}).") from None
        return Record(cfg, path, int(state["epoch"]), kind, state)
    raise RecordError(f"{d} is not a trial record: it has neither {CHECKPOINT_NAME} (a `lico-tune train` output "
                      f"directory) nor {TRIAL_SPEC} (a Ray Tune trial directory, <storage>/<experiment>/trial_*).")


class _Stop(Exception):
    pass


def retrain(rec: Record, out_dir: Path, log: Optional[Callable[[str], None]] = None) -> dict:
    """Train rec.config into out_dir up to rec.epoch; returns the new checkpoint's state."""
    from .loop import train_trial

    def stop_at_epoch(metrics: dict, _ckpt: Path) -> None:
        if metrics["epoch"] >= rec.epoch:
            raise _Stop
    try:
        train_trial(rec.config, out_dir, report=stop_at_epoch, log=log)
    except _Stop:
        pass
    return load_checkpoint(out_dir / CHECKPOINT_NAME)


def _walk(obj, prefix: str = ""):
    """(dotted name, leaf) of every leaf of nested dicts/lists."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not prefix and k in SKIP:
                continue
            yield from _walk(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{prefix}{i}.")
    else:
        yield prefix[:-1], obj


def compare(old: dict, new: dict) -> Comparison:
    """Every tensor and every number of two checkpoint states (wall-clock metrics excepted)."""
    c = Comparison()
    a, b = dict(_walk(old)), dict(_walk(new))
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name), b.get(name)
        is_metric = name.startswith("history.")
        if is_metric and name.endswith(TIMING):
            continue
        if torch.is_tensor(x) or torch.is_tensor(y):
            c.tensors += 1
            if not (torch.is_tensor(x) and torch.is_tensor(y)):
                c.tensor_diffs.append(f"{name}: only in {'the record' if torch.is_tensor(x) else 'the rerun'}")
            elif x.shape != y.shape or x.dtype != y.dtype:
                c.tensor_diffs.append(f"{name}: {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}")
            elif not torch.equal(x, y):
                diff = (x.double() - y.double()).abs().max().item() if x.is_floating_point() else "int"
                c.tensor_diffs.append(f"{name}: max |diff| {diff:.3g}" if isinstance(diff, float) else
                                      f"{name}: differs")
        else:
            c.metrics += is_metric
            same = x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
            if not same:
                (c.metric_diffs if is_metric else c.state_diffs).append(f"{name}: {x!r} vs {y!r}")
    return c


def warnings_for(rec: Record) -> list[str]:
    """What makes a mismatch expected: the record was not deterministic, or ran other versions."""
    out = []
    if rec.config.train.fail_at_step is not None:
        out.append(f"the record has train.fail_at_step {rec.config.train.fail_at_step} (a testing aid): a Ray trial "
                   f"that recovered from it was resumed from a checkpoint, which a straight rerun does not repeat")
    env = rec.state.get("environment") or {}
    det = env.get("determinism") or {}
    if det and not det.get("deterministic_algorithms"):
        out.append("the record was trained without deterministic algorithms (train.deterministic off or a "
                   "CUDA trial): a mismatch is expected")
    if not env:
        out.append("the record has no environment provenance (written before lico-tune recorded it): thread "
                   "count and versions unknown")
    else:
        from ..provenance import hardware, versions
        now, then = versions(), env.get("versions") or {}
        changed = [f"{k} {then[k]} -> {now.get(k)}" for k in then if then[k] != now.get(k) and k != "lico-tune"]
        if changed:
            out.append("package versions differ from the record's: " + ", ".join(changed))
        then_hw, now_hw = env.get("hardware") or {}, hardware()
        if then_hw.get("cpu") not in (None, now_hw["cpu"]):
            out.append(f"other CPU model than the record's ({then_hw['cpu']})")
        if "cpu_flags" not in then_hw:
            out.append("the record does not name its CPU's instruction sets (written before lico-tune recorded "
                       "them): on another machine, even of the same model name, the bits can differ")
        elif (then_hw.get("cpu_capability"), then_hw.get("cpu_flags")) != (now_hw["cpu_capability"], now_hw["cpu_flags"]):
            out.append(f"other CPU instruction sets than the record's (torch kernels {then_hw.get('cpu_capability')} "
                       f"-> {now_hw['cpu_capability']}, flags {then_hw.get('cpu_flags')} -> {now_hw['cpu_flags']}): "
                       f"the bits can differ")
    return out


def rerun(trial_dir: str | Path, out_dir: Optional[str | Path] = None,
          log: Optional[Callable[[str], None]] = None) -> tuple[Record, Comparison, Path]:
    """Retrain the trial in `trial_dir` into `out_dir` (default: a fresh temp dir, removed
    afterwards) and compare. Returns (record, comparison, the directory trained into)."""
    rec = find_record(trial_dir)
    keep = out_dir is not None
    out = Path(out_dir) if keep else Path(tempfile.mkdtemp(prefix="lico-rerun-"))
    if keep and (out / CHECKPOINT_NAME).exists():
        raise OutputExists(f"{out} already holds a checkpoint; pass an empty --out directory.")
    try:
        new = retrain(rec, out, log)
        if rec.metrics_only:
            new = {"epoch": new["epoch"], "history": new["history"]}
        return rec, compare(rec.state, new), out
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


__all__ = ["CheckpointError", "Comparison", "Record", "RecordError", "compare", "find_record", "rerun", "retrain"]
