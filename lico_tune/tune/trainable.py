"""The Ray Tune function trainable: one trial of an experiment, wrapping `train.train_trial`.

Per trial it resolves the config once (base + sampled values + arm, `plan.resolve.resolve_trial`:
sampled values exist only here), writes the resolved trial spec and provenance into the trial directory, trains, and reports each
epoch through `tune.report` with a checkpoint. When Tune retries a failed trial
(`FailureConfig(max_failures)`) or resumes an experiment, `tune.get_checkpoint()` gives the last
checkpoint and training continues from it.

`train.fail_at_step` (the NaN-injection testing aid) is a *transient* fault here: it fires in a
trial's first attempt only, and a retry from a checkpoint runs without it. With fail_at_step 0 no
checkpoint exists yet, so every attempt fails (a permanent fault).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

import ray
import yaml
from ray import tune

from ..keys import TRIAL_INDEX, config_id
from ..layout import CHECKPOINT_FILE, GALLERY, METRICS_FILE, PROVENANCE, TRAIN_LOG, TRIAL_SPEC, scratch_prefix
from ..plan.resolve import resolve_trial
from ..provenance import provenance
from ..storage.safe_files import write_atomic
from ..train.checkpoint import CheckpointError


def make_trainable(runtime: dict):
    """The Tune function trainable for this experiment (the runtime is captured, not sent per trial)."""

    def lico_trial(config: dict) -> None:
        from lico_tune.tune.trainable import run_trial
        run_trial(config, runtime)

    return lico_trial


def _scalar_metrics(metrics: dict) -> dict:
    """Only numbers and strings go to Tune (no history, no config)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}


def exit_is_not_an_error(unraisable) -> None:
    """sys.unraisablehook of a trial's worker. Ray ends a worker with SIGTERM, which Ray's handler turns
    into SystemExit; raised inside a weakref callback or a __del__ it reaches this hook, whose default
    prints "Exception ignored in ... Traceback" into the driver's output (log_to_driver) at the end of
    a sweep that went well (seen after a resume: a WeakSet's _remove). An exit is not a trial's error;
    anything else is printed as Python would."""
    if isinstance(unraisable.exc_value, (SystemExit, KeyboardInterrupt)):
        return
    sys.__unraisablehook__(unraisable)


def run_trial(config: dict, runtime: dict) -> None:
    from ..train import train_trial  # here, not at the top: the driver builds the Tuner without torch

    sys.unraisablehook = exit_is_not_an_error

    logging.getLogger("ray.train").setLevel(logging.WARNING)   # no "Checkpoint created" line per epoch
    cfg = resolve_trial(runtime, config)
    arm = config.get("arm")
    trial_dir = Path.cwd()            # Tune's trial working directory; synced as artifacts
    ctx = tune.get_context()
    # config_id: shared by the seeds of one configuration (repeats, or a train.seed axis)
    info = {"trial_id": ctx.get_trial_id(), "trial_name": ctx.get_trial_name(), "arm": arm,
            "config_id": config_id(config), "repeat": config.get(TRIAL_INDEX, 0),
            "params": {k: v for k, v in config.items() if k != "arm"},
            "node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
            **provenance(cfg)}
    spec_text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    write_atomic(str(trial_dir / TRIAL_SPEC), spec_text.encode())
    write_atomic(str(trial_dir / PROVENANCE), json.dumps(info, indent=2).encode())

    scratch = Path(tempfile.mkdtemp(prefix=scratch_prefix(ctx.get_trial_id())))   # the driver removes it if we are killed
    log_file = open(trial_dir / TRAIN_LOG, "a", buffering=1)

    def log(msg: str) -> None:
        log_file.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    resume, restored_from = False, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            shutil.copy2(Path(d) / CHECKPOINT_FILE, scratch / CHECKPOINT_FILE)
            if not (trial_dir / TRAIN_LOG).stat().st_size and (Path(d) / TRAIN_LOG).exists():
                # A restored experiment starts in a fresh working directory: keep the log so far.
                log_file.write((Path(d) / TRAIN_LOG).read_text())
        resume, restored_from = True, f"{checkpoint.path.rstrip('/')}/{CHECKPOINT_FILE}"
        if cfg.train.fail_at_step is not None:
            cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"fail_at_step": None})})
        log(f"restored from Tune checkpoint {checkpoint.path}")
    extra = {"arm": arm or "-", "dataset": cfg.data.name, "config_id": info["config_id"],
             "seed": cfg.train.seed}

    def report(metrics: dict, checkpoint_file: Path) -> None:
        ckpt_dir = Path(tempfile.mkdtemp(prefix="ckpt-", dir=scratch))
        try:
            try:   # same filesystem: a hard link (save_checkpoint replaces the file, never rewrites it)
                os.link(checkpoint_file, ckpt_dir / CHECKPOINT_FILE)
            except OSError:
                shutil.copy2(checkpoint_file, ckpt_dir / CHECKPOINT_FILE)
            (ckpt_dir / TRIAL_SPEC).write_text(spec_text)
            (ckpt_dir / PROVENANCE).write_text(json.dumps(info, indent=2))
            log_file.flush()
            shutil.copy2(trial_dir / TRAIN_LOG, ckpt_dir / TRAIN_LOG)
            if (scratch / GALLERY).is_dir():   # saliency overlays of the last epoch: a trial artifact
                shutil.copytree(scratch / GALLERY, trial_dir / GALLERY, dirs_exist_ok=True)
            tune.report({**_scalar_metrics(metrics), **extra},
                        checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))
            reported.append(metrics.get("epoch"))
        finally:
            shutil.rmtree(ckpt_dir, ignore_errors=True)

    reported: list = []
    try:
        try:
            final = train_trial(cfg, scratch, report=report, log=log, resume=resume)
            if resume and not reported:
                # Restored from its final checkpoint (the trial had finished when its driver was killed,
                # tune/recover.py): report the recorded final metrics again, so that Tune ends it with them.
                tune.report({**_scalar_metrics(final), **extra})
        except CheckpointError as exc:      # name the stored checkpoint, not its scratch copy
            if restored_from is None:
                raise
            raise CheckpointError(str(exc).replace(str(scratch / CHECKPOINT_FILE), restored_from)) from None
        if (scratch / METRICS_FILE).exists():
            shutil.copy2(scratch / METRICS_FILE, trial_dir / METRICS_FILE)
    except Exception as exc:
        log(f"failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")   # the terminal gets one line
        raise
    finally:
        log_file.close()
        shutil.rmtree(scratch, ignore_errors=True)
