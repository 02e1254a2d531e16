"""The pieces a trial is built from: data and the LICO model, the optimiser, the learning-rate
schedule, the EMA update, and test-set predictions."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from ..compute import pick_device
from ..data import build_data
from ..data.loader import iterate_batches
from ..models import build_classifier, build_prompt_learner
from ..models.lico import LicoModel
from ..spec import TrialConfig


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
    model = LicoModel(classifier, prompts, cfg.lico, shape, cfg.text.proj_hidden, cfg.text.proj_dropout,
                      label_smoothing=cfg.train.label_smoothing)
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
