"""One LICO trial: fit, evaluate, checkpoint. Runs standalone (`lico-tune train`) or as a Ray
Tune trainable: it never prints; progress goes to `log` and results to `report`.

`train_trial` runs the phases: `_start` (compute context, model, optimiser, resumed state),
per epoch `_train_epoch`, `_evaluate` (when due), `_explain` (after the last epoch: the chance
check and saliency) and `_save` (the checkpoint)."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..compute import autocast, configure_determinism, pick_device
from ..data.loader import iterate_batches
from ..errors import BadInput, OutputExists, TrialConfigError
from .integrity import nonfinite_tensors
from ..keys import TEST_CORRECT, accuracy_key, pack_correct
from ..layout import CHECKPOINT_FILE, METRICS_FILE
from ..provenance import provenance
from ..storage.safe_files import write_atomic
from ..saliency.trial import saliency_metric_keys, trial_saliency, val_saliency
from ..spec import TrialConfig, saved_trial
from .chance import check_predictions
from .checkpoint import CheckpointError, load_checkpoint, load_trainable_state, save_checkpoint, trainable_state
from .health import Health
from .parts import TrialParts, WarmupCosine, accuracy, build_trial, evaluate, make_optimizer, predict, warmup_ema

Report = Callable[[dict, Path], None]  # (metrics of one epoch, checkpoint file)
Log = Callable[[str], None]


class TrialDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class ResumeMismatch(BadInput, ValueError):
    """--resume with a spec that differs from the one the checkpoint was trained with."""


def check_finite_weights(model: nn.Module, epoch: int, ckpt_path: Path) -> None:
    bad = nonfinite_tensors(model)
    if bad:
        kept = f"the last good checkpoint is {ckpt_path}" if ckpt_path.exists() else "no checkpoint was written"
        raise TrialDiverged(
            f"{len(bad)} of {len(model.state_dict())} weight tensors are not finite after epoch {epoch + 1} "
            f"(e.g. {', '.join(bad[:3])}) although the loss was; the trial stopped and {kept}. Try a lower "
            f"train.lr or train.precision fp32.")


def _check_resume(saved: dict, cfg: TrialConfig) -> None:
    old = TrialConfig.model_validate(saved_trial(saved)).model_dump()
    new = cfg.model_dump()
    for key in ("epochs", "fail_at_step", "log_every", "threads"):  # may change between runs
        old["train"].pop(key), new["train"].pop(key)
    if old != new:
        diffs = [f"{sec}.{k}: {old[sec][k]!r} -> {new[sec][k]!r}" for sec in old
                 for k in old[sec] if old[sec][k] != new[sec].get(k)]
        raise ResumeMismatch(
            "The spec differs from the one the checkpoint was trained with (" + "; ".join(diffs[:6]) +
            "). Resume with the same spec (only train.epochs may change) or train into a new --out directory.")


@dataclass
class TrialRun:
    """One trial in progress: what its phases share."""
    cfg: TrialConfig
    out_dir: Path
    ckpt_path: Path
    device: torch.device
    parts: TrialParts
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: Optional[AveragedModel]
    scaler: torch.amp.GradScaler
    health: Health
    steps_per_epoch: int
    total_steps: int
    log: Log
    start_epoch: int = 0
    global_step: int = 0
    history: list = field(default_factory=list)
    test_correct: dict = field(default_factory=dict)  # accuracy key -> packed per-image correctness (keys.pack_correct)

    @property
    def explain_ema(self) -> bool:
        """Whether saliency explains the EMA weights (eval.model: ema)."""
        return self.ema is not None and self.cfg.eval.model == "ema"


def train_trial(cfg: TrialConfig, out_dir: str | Path, report: Optional[Report] = None,
                log: Optional[Log] = None, resume: bool = False,
                progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Train one trial into `out_dir` and return its final metrics (also written to metrics.json).
    `progress(step, total_steps)` is called after each optimiser step (a progress bar).

    Each epoch: evaluate, save `out_dir/checkpoint.pt`, then call `report(metrics, checkpoint)`.
    With `resume`, continue from the checkpoint in `out_dir`.
    """
    run = _start(cfg, Path(out_dir), log or (lambda _msg: None), resume)
    t = cfg.train
    # Every key the trial will report, so the first report carries them all (NaN until computed):
    # Ray fixes progress.csv's columns at a trial's first result. Only reports are padded, not history.
    later = [accuracy_key("test"), *([accuracy_key("test", ema=True)] if run.ema is not None else []),
             *saliency_metric_keys(cfg.eval, run.parts.data), *Health.final_keys()]
    padded = False
    metrics: dict = run.history[-1] if run.history else {}
    for epoch in range(run.start_epoch, t.epochs):
        sums, seen, n_steps, train_time = _train_epoch(run, epoch, progress)
        metrics = {"epoch": epoch + 1, "step": run.global_step,
                   **{f"train/{k}": v / n_steps for k, v in sums.items()},
                   "train/images_per_s": seen / train_time, "lr": run.scheduler.get_last_lr()[0]}
        check_finite_weights(run.parts.model, epoch, run.ckpt_path)    # a finite loss can still leave inf/nan weights
        last = epoch + 1 == t.epochs
        test_pred = _evaluate(run, metrics) if last or (epoch + 1) % cfg.eval.every == 0 else None
        metrics.update(run.health.epoch_end())
        if last:
            _explain(run, metrics, test_pred)
        run.history.append(metrics)
        _save(run, epoch)
        accs = " ".join(f"{k.split('/')[1]} {metrics[k]:.2f}%" for k in ("test/acc", "test/acc_ema") if k in metrics)
        run.log(f"epoch {epoch + 1}/{t.epochs} done: ce {metrics['train/ce']:.4f} mm {metrics['train/mm']:.4f} "
                f"ot {metrics['train/ot']:.4f} {accs} {metrics['train/images_per_s']:.0f} img/s ({train_time:.1f}s)")
        if report is not None:
            report(metrics if padded else {**metrics, **{k: math.nan for k in later if k not in metrics}},
                   run.ckpt_path)
            padded = True

    final = {**metrics, "warnings": [str(w) for w in run.health.warned], "history": run.history,
             "config": cfg.model_dump(mode="json"), TEST_CORRECT: run.test_correct, **provenance(cfg)}
    write_atomic(str(run.out_dir / METRICS_FILE), json.dumps(final, indent=2).encode())
    return final


def _start(cfg: TrialConfig, out_dir: Path, log: Log, resume: bool) -> TrialRun:
    """The compute context, the model, optimiser, schedule and EMA, and (with `resume`) their state
    from the checkpoint in `out_dir`; the health checks started."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_FILE
    t = cfg.train
    device = pick_device(t.device)
    configure_determinism(t, device)      # threads, deterministic algorithms (before any op)
    if t.precision == "fp16" and device.type != "cuda":
        raise TrialConfigError("train.precision 'fp16' needs CUDA; use 'bf16' or 'fp32' on the CPU.")

    saved = None
    if resume:
        saved = load_checkpoint(ckpt_path)
        _check_resume(saved["config"], cfg)
    elif ckpt_path.exists():
        raise OutputExists(f"{out_dir} already holds a checkpoint. Pass --resume to continue it, "
                           f"or choose another output directory.")

    parts = build_trial(cfg, device)
    model, data = parts.model, parts.data
    optimizer = make_optimizer(model, cfg)
    n_train = len(data.train)
    steps_per_epoch = math.ceil(n_train / t.batch_size)
    if t.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, t.steps_per_epoch)
    total_steps = steps_per_epoch * t.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(total_steps, round(t.warmup_epochs * steps_per_epoch), t.schedule == "cosine"))
    ema = (AveragedModel(model.classifier, multi_avg_fn=warmup_ema(t.ema), use_buffers=True)
           if t.ema else None)
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")

    start_epoch, global_step, history = 0, 0, []
    if saved is not None:
        load_trainable_state(model, saved["model"], str(ckpt_path))
        try:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            if ema is not None and saved.get("ema") is not None:
                ema.load_state_dict(saved["ema"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{ckpt_path}: optimizer/scheduler state does not fit ({exc}).") from None
        start_epoch, global_step, history = saved["epoch"], saved["global_step"], saved["history"]
        torch.set_rng_state(saved["torch_rng"])
        log(f"resumed from {ckpt_path} after epoch {start_epoch}")
    health = Health(model, cfg, data, device, log, total_steps)
    health.restore(history)
    health.load_state(saved.get("health") if saved is not None else None)
    health.start()

    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_val = f" / {len(data.val)} val" if data.val is not None else ""
    log(f"{cfg.data.name}: {n_train} train{n_val} / {len(data.test)} test images, {data.num_classes} classes; "
        f"{cfg.model.backbone} + {cfg.text.encoder}:{cfg.text.model} ({n_params / 1e6:.2f}M trainable) "
        f"on {device}; {t.epochs} epochs x {steps_per_epoch} steps")
    if model.uses_ot:
        log("ot is printed as the transport cost <pi*, C> (no entropy term); its gradient is that of the "
            "entropic objective <pi, C> + eps*sum(pi log pi) at the optimal plan")
    if model.static_text:
        log("text features: computed once (nothing in this trial can change them)")
    return TrialRun(cfg, out_dir, ckpt_path, device, parts, optimizer, scheduler, ema, scaler, health,
                    steps_per_epoch, total_steps, log, start_epoch, global_step, history)


def _train_epoch(run: TrialRun, epoch: int, progress) -> tuple[dict, int, int, float]:
    """One epoch of optimiser steps: (summed losses, images seen, steps (>= 1), seconds)."""
    t, model, data, device = run.cfg.train, run.parts.model, run.parts.data, run.device
    model.train()
    sums = {"loss": 0.0, "ce": 0.0, "mm": 0.0, "ot": 0.0}
    seen, n_steps, t0 = 0, 0, time.perf_counter()
    n_train = len(data.train)
    batches = iterate_batches(data.train, t.batch_size, shuffle=True, seed=t.seed, epoch=epoch,
                              drop_last=n_train >= t.batch_size)
    for step, (x, y) in enumerate(batches):
        if step >= run.steps_per_epoch:
            break
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        run.health.before_forward(run.global_step)
        with autocast(device.type, t.precision):
            logits, terms = model(x, y)
        loss, loss_parts = model.loss(logits, y, terms)
        run.health.after_forward(run.global_step, logits, y, terms)
        if t.fail_at_step is not None and run.global_step == t.fail_at_step:
            loss = loss * float("nan")
        if not torch.isfinite(loss):
            shown = ", ".join(f"{k} {v.item():.4g}" for k, v in loss_parts.items())
            kept = f"the last good checkpoint is {run.ckpt_path}" if run.ckpt_path.exists() else \
                "no checkpoint was written yet"
            raise TrialDiverged(
                f"Loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} ({shown}); "
                f"the trial stopped and {kept}. Try a lower train.lr, train.precision fp32, a "
                f"larger lico.ot.epsilon or more lico.ot.max_iter.")
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(model.classifier)
        run.global_step += 1
        n_steps += 1
        if progress is not None:
            progress(run.global_step, run.total_steps)
        seen += y.numel()
        sums["loss"] += loss.item()
        for k, v in loss_parts.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        if n_steps % t.log_every == 0:
            rate = seen / (time.perf_counter() - t0)
            run.log(f"epoch {epoch + 1}/{t.epochs} step {n_steps}/{run.steps_per_epoch} " +
                    " ".join(f"{k} {sums[k] / n_steps:.4f}" for k in ("ce", "mm", "ot")) +
                    f" {rate:.0f} img/s")
    return sums, seen, max(1, n_steps), time.perf_counter() - t0


def _evaluate(run: TrialRun, metrics: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Test (and validation) accuracy into `metrics`; returns the explained model's (predicted,
    true) test classes."""
    cfg, model, data, ema = run.cfg, run.parts.model, run.parts.data, run.ema
    test_pred = predict(model.classifier, data.test, run.device, cfg.eval.batch_size)
    metrics[accuracy_key("test")] = accuracy(*test_pred)
    run.test_correct = {accuracy_key("test"): pack_correct((test_pred[0] == test_pred[1]).numpy())}
    if ema is not None:
        ema_pred = predict(ema.module, data.test, run.device, cfg.eval.batch_size)
        metrics[accuracy_key("test", ema=True)] = accuracy(*ema_pred)
        run.test_correct[accuracy_key("test", ema=True)] = pack_correct((ema_pred[0] == ema_pred[1]).numpy())
        test_pred = ema_pred if run.explain_ema else test_pred
    if data.val is not None:     # what searches select on (data.val_fraction)
        metrics[accuracy_key("val")] = evaluate(model.classifier, data.val, run.device, cfg.eval.batch_size)
        if ema is not None:
            metrics[accuracy_key("val", ema=True)] = evaluate(ema.module, data.val, run.device, cfg.eval.batch_size)
    return test_pred


def _explain(run: TrialRun, metrics: dict, test_pred) -> None:
    """After the last epoch: did the explained model learn anything (every arm: saliency of an
    untrained model says nothing), then its saliency metrics."""
    cfg = run.cfg
    explained = run.ema.module if run.explain_ema else run.parts.model.classifier
    metrics.update(run.health.final_check(check_predictions(*test_pred),
                                          "test accuracy (EMA weights)" if run.explain_ema else "test accuracy"))
    run.log(f"saliency: {', '.join(cfg.eval.cams)} on {cfg.eval.n_images} test images")
    metrics.update(trial_saliency(explained, run.parts.data, cfg.eval, run.out_dir))
    if cfg.eval.val_saliency:
        metrics.update(val_saliency(explained, run.parts.data.val, cfg.eval))


def _save(run: TrialRun, epoch: int) -> None:
    ema = run.ema
    save_checkpoint({
        "model": trainable_state(run.parts.model), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
        "epoch": epoch + 1, "global_step": run.global_step, "history": run.history,
        "torch_rng": torch.get_rng_state(), "health": run.health.state(),
        "config": run.cfg.model_dump(mode="json"), "class_names": run.parts.class_names, **provenance(run.cfg),
    }, run.ckpt_path)
