"""One LICO trial: fit, evaluate, checkpoint. Runs standalone (`lico-tune train`) or as a Ray
Tune trainable: it never prints; progress goes to `log` and results to `report`."""
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

from .chance import check_predictions
from .checkpoint import (CheckpointError, load_checkpoint, load_trainable_state,
                         save_checkpoint, trainable_state)
from .data import build_data
from .data.loader import iterate_batches
from .determinism import configure as configure_determinism
from .device import TrialConfigError, pick_device
from .errors import BadInput, OutputExists
from .models import build_classifier, build_prompt_learner
from .models.lico import LicoModel
from .health import Health
from .integrity import nonfinite_tensors
from .layout import CHECKPOINT_FILE, METRICS_FILE
from .precision import autocast
from .provenance import provenance
from .saliency.trial import saliency_metric_keys, trial_saliency, val_saliency
from .spec import TrialConfig, saved_trial

Report = Callable[[dict, Path], None]  # (metrics of one epoch, checkpoint file)
Log = Callable[[str], None]


class TrialDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class ResumeMismatch(BadInput, ValueError):
    """--resume with a spec that differs from the one the checkpoint was trained with."""


@dataclass
class TrialParts:
    model: LicoModel
    data: object
    device: torch.device
    class_names: list[str] = field(default_factory=list)


def build_trial(cfg: TrialConfig, device: Optional[torch.device] = None) -> TrialParts:
    """Data and the LICO model for a trial config (seeded, on `device`)."""
    torch.manual_seed(cfg.train.seed)
    device = device or pick_device(cfg.train.device)
    data = build_data(cfg.data, seed=cfg.train.seed)
    classifier = build_classifier(cfg.model, data.num_classes, data.in_channels)
    prompts = build_prompt_learner(cfg.text, data.class_names) if cfg.lico.enabled else None
    shape = classifier.feature_shape(data.in_channels, data.image_size)
    model = LicoModel(classifier, prompts, cfg.lico, shape, cfg.text.proj_hidden, cfg.text.proj_dropout)
    return TrialParts(model.to(device), data, device, list(data.class_names))


def make_optimizer(model: LicoModel, cfg: TrialConfig) -> torch.optim.Optimizer:
    t = cfg.train
    text_params = [p for n, p in model.named_parameters()
                   if p.requires_grad and not n.startswith(("classifier.", "temperature."))]
    groups = [{"params": [p for p in model.classifier.parameters() if p.requires_grad]},
              {"params": text_params, "lr": t.text_lr or t.lr}]
    tau = model.temperature.parameter()
    if tau is not None and cfg.lico.enabled:
        groups.append({"params": [tau], "lr": t.text_lr or t.lr,
                       "weight_decay": cfg.lico.mm.temperature_weight_decay})
    groups = [g for g in groups if g["params"]]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov and t.momentum > 0,
                               weight_decay=t.weight_decay)
    return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)


class WarmupCosine:
    """Learning-rate factor per optimiser step: linear warm-up, then cosine (or constant) decay.
    A class rather than a lambda so the scheduler's state dict stays weights_only-loadable."""

    def __init__(self, total_steps: int, warmup_steps: int, cosine: bool):
        self.total, self.warmup, self.cosine = total_steps, warmup_steps, cosine

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if not self.cosine:
            return 1.0
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def warmup_ema(decay: float):
    """EMA update with the decay warmed up as min(decay, (1 + n) / (10 + n)) after n updates (as
    TensorFlow's ExponentialMovingAverage with num_updates): a fixed 0.999 would leave a short
    run's EMA weights mostly at their random initialisation."""

    @torch.no_grad()
    def update(ema_params: list, params: list, num_averaged) -> None:
        n = float(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        floats = [(e, p) for e, p in zip(ema_params, params) if torch.is_floating_point(e)]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [p for _, p in floats], weight)
        for e, p in zip(ema_params, params):
            if not torch.is_floating_point(e):
                e.copy_(p)  # integer buffers (BN's num_batches_tracked)
    return update


@torch.no_grad()
def predict(classifier: nn.Module, dataset, device: torch.device, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) class indices of every image of `dataset`, both (n,) int64 on the CPU."""
    was_training = classifier.training
    classifier.eval()
    preds, labels = [], []
    for x, y in iterate_batches(dataset, batch_size, shuffle=False, seed=0):
        preds.append(classifier(x.to(device, non_blocking=True)).argmax(1).cpu())
        labels.append(y.cpu())
    classifier.train(was_training)
    empty = torch.zeros(0, dtype=torch.long)
    return (torch.cat(preds).long() if preds else empty), (torch.cat(labels).long() if labels else empty)


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (pred == labels).sum().item() / max(1, labels.numel())


def evaluate(classifier: nn.Module, dataset, device: torch.device, batch_size: int) -> float:
    """Top-1 accuracy in percent."""
    return accuracy(*predict(classifier, dataset, device, batch_size))


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


def train_trial(cfg: TrialConfig, out_dir: str | Path, report: Optional[Report] = None,
                log: Optional[Log] = None, resume: bool = False,
                progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Train one trial into `out_dir` and return its final metrics (also written to metrics.json).
    `progress(step, total_steps)` is called after each optimiser step (a progress bar).

    Each epoch: evaluate, save `out_dir/checkpoint.pt`, then call `report(metrics, checkpoint)`.
    With `resume`, continue from the checkpoint in `out_dir`.
    """
    log = log or (lambda _msg: None)
    out_dir = Path(out_dir)
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

    # Every key the trial will report, so the first report carries them all (NaN until computed):
    # Ray fixes progress.csv's columns at a trial's first result. Only reports are padded, not history.
    later = ["test/acc", *(["test/acc_ema"] if ema is not None else []), *saliency_metric_keys(cfg.eval, data),
             *Health.final_keys()]
    explain_ema = ema is not None and cfg.eval.model == "ema"   # the model saliency explains
    padded = False

    metrics: dict = history[-1] if history else {}
    for epoch in range(start_epoch, t.epochs):
        model.train()
        sums = {"loss": 0.0, "ce": 0.0, "mm": 0.0, "ot": 0.0}
        seen, n_steps, t0 = 0, 0, time.perf_counter()
        batches = iterate_batches(data.train, t.batch_size, shuffle=True, seed=t.seed, epoch=epoch,
                                  drop_last=n_train >= t.batch_size)
        for step, (x, y) in enumerate(batches):
            if step >= steps_per_epoch:
                break
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            health.before_forward(global_step)
            with autocast(device.type, t.precision):
                logits, terms = model(x, y)
            loss, loss_parts = model.loss(logits, y, terms)
            health.after_forward(global_step, logits, y, terms)
            if t.fail_at_step is not None and global_step == t.fail_at_step:
                loss = loss * float("nan")
            if not torch.isfinite(loss):
                shown = ", ".join(f"{k} {v.item():.4g}" for k, v in loss_parts.items())
                kept = f"the last good checkpoint is {ckpt_path}" if ckpt_path.exists() else \
                    "no checkpoint was written yet"
                raise TrialDiverged(
                    f"Loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} ({shown}); "
                    f"the trial stopped and {kept}. Try a lower train.lr, train.precision fp32, a "
                    f"larger lico.ot.epsilon or more lico.ot.max_iter.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model.classifier)
            global_step += 1
            n_steps += 1
            if progress is not None:
                progress(global_step, total_steps)
            seen += y.numel()
            sums["loss"] += loss.item()
            for k, v in loss_parts.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            if n_steps % t.log_every == 0:
                rate = seen / (time.perf_counter() - t0)
                log(f"epoch {epoch + 1}/{t.epochs} step {n_steps}/{steps_per_epoch} " +
                    " ".join(f"{k} {sums[k] / n_steps:.4f}" for k in ("ce", "mm", "ot")) +
                    f" {rate:.0f} img/s")
        n_steps = max(1, n_steps)
        train_time = time.perf_counter() - t0

        last = epoch + 1 == t.epochs
        metrics = {"epoch": epoch + 1, "step": global_step,
                   **{f"train/{k}": v / n_steps for k, v in sums.items()},
                   "train/images_per_s": seen / train_time, "lr": scheduler.get_last_lr()[0]}
        check_finite_weights(model, epoch, ckpt_path)    # a finite loss can still leave inf/nan weights
        test_pred = None   # (predicted, true) classes of the explained model on the test set
        if last or (epoch + 1) % cfg.eval.every == 0:
            test_pred = predict(model.classifier, data.test, device, cfg.eval.batch_size)
            metrics["test/acc"] = accuracy(*test_pred)
            if ema is not None:
                ema_pred = predict(ema.module, data.test, device, cfg.eval.batch_size)
                metrics["test/acc_ema"] = accuracy(*ema_pred)
                test_pred = ema_pred if explain_ema else test_pred
            if data.val is not None:     # what searches select on (data.val_fraction)
                metrics["val/acc"] = evaluate(model.classifier, data.val, device, cfg.eval.batch_size)
                if ema is not None:
                    metrics["val/acc_ema"] = evaluate(ema.module, data.val, device, cfg.eval.batch_size)
        metrics.update(health.epoch_end())
        if last:
            explained = ema.module if explain_ema else model.classifier
            # Did the explained model learn anything? (every arm; saliency of an untrained model says nothing)
            metrics.update(health.final_check(check_predictions(*test_pred),
                                              "test accuracy (EMA weights)" if explain_ema else "test accuracy"))
            log(f"saliency: {', '.join(cfg.eval.cams)} on {cfg.eval.n_images} test images")
            metrics.update(trial_saliency(explained, data, cfg.eval, out_dir))
            if cfg.eval.val_saliency:
                metrics.update(val_saliency(explained, data.val, cfg.eval))
        history.append(metrics)
        save_checkpoint({
            "model": trainable_state(model), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
            "epoch": epoch + 1, "global_step": global_step, "history": history,
            "torch_rng": torch.get_rng_state(), "health": health.state(),
            "config": cfg.model_dump(mode="json"), "class_names": parts.class_names, **provenance(cfg),
        }, ckpt_path)
        accs = " ".join(f"{k.split('/')[1]} {metrics[k]:.2f}%" for k in ("test/acc", "test/acc_ema") if k in metrics)
        log(f"epoch {epoch + 1}/{t.epochs} done: ce {metrics['train/ce']:.4f} mm {metrics['train/mm']:.4f} "
            f"ot {metrics['train/ot']:.4f} {accs} {metrics['train/images_per_s']:.0f} img/s ({train_time:.1f}s)")
        if report is not None:
            report(metrics if padded else {**metrics, **{k: math.nan for k in later if k not in metrics}}, ckpt_path)
            padded = True

    final = {**metrics, "warnings": list(health.warned), "history": history, "config": cfg.model_dump(mode="json"),
             **provenance(cfg)}
    (out_dir / METRICS_FILE).write_text(json.dumps(final, indent=2))
    return final
