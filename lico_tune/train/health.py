"""Health checks of the LICO terms, every epoch of every trial (docs/method.md, "Health checks").

A LICO trial can look healthy in its loss log and still train plain cross-entropy: a learnable
temperature shared by both MM softmaxes runs away (MM -> 0 whatever the geometry), MM's dose can be
too small to matter, OT's text points can collapse into one class-agnostic target, Sinkhorn at
small epsilon stops far from a transport plan. So each epoch reports, as metrics `health/...` and
one log line:

  tau, tau_target        the MM temperatures (tau_target only when separate)
  mm_ref, mm_ref0        MM of a fixed batch (eval mode) against the untrained model's text features,
                         at one fixed reference temperature for both sides
                         (lico.mm.reference_temperature), now and before the first step;
  mm_ref_change          (mm_ref - mm_ref0) / mm_ref0: negative when the image manifold moved
                         towards the text one
  sinkhorn_iters         most Sinkhorn iterations of any solve in the epoch
  marginal_err           largest final row-marginal L1 error of any solve in the epoch
  text_cos               mean pairwise cosine of each class's N text points as the encoder gives them
  text_cos_proj          the same for OT's points (after the projection h, or the frozen anchors)
  text_cos_between       mean cosine between OT's points of different classes (near 1: collapsed),
                         and text_cos_between0 before training
  text_cos_image         mean cosine of OT's points with the mean image point of the fixed batch
  class_text_cos         mean pairwise cosine between the K classes' pooled text features (MM's side)
  grad_frac/{ce,mm,ot}   each weighted term's fraction of the squared gradient norm at the backbone's
                         feature map F, |g_t|^2 / sum_s |g_s|^2 (the terms' gradients are nearly
                         orthogonal there, so squared norms add), mean over the epoch's probes
  dose/{mm,ot}           |g_alpha*MM| / |g_CE| and |g_beta*OT| / |g_CE| at F (norm ratios), likewise
  dose0/{mm,ot}          the same on the untrained model (global step 0), once per trial

The gradient probes run on GRAD_PROBES global steps spread evenly over training; step 0 gives
dose0 only (the untrained model is not averaged into the epochs' values). Warnings (rules in
health_rules.py; HealthWarning values) are given once per kind, in the log, as the text
`health/warnings` and as 0/1 flags `health/warn/<kind>` (numbers reach the results table);
metrics.json lists them as `warnings`.
Everything per step stays on the device (no sync); values are read once per epoch.

At the end of every trial, LICO or not, `final_check` adds whether the explained model learned
anything at all (lico_tune/train/chance.py: 'at chance', 'collapsed'), with the same flags and texts.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from ..data.loader import iterate_batches
from ..keys import (CHANCE_KEYS, CHANCE_KINDS, CLASS_TEXT_COS, HEALTH_WARNINGS, MARGINAL_ERR, MM_REF, MM_REF0,
                    MM_REF_CHANGE, SINKHORN_ITERS, TAU, TAU_TARGET, TERMS, TEXT_COS, TEXT_COS_BETWEEN, TEXT_COS_BETWEEN0,
                    TEXT_COS_IMAGE, TEXT_COS_PROJ, WARNING_KINDS, HealthWarning, dose, grad_frac, health_text,
                    read_health_warnings, warn_flag)
from ..models.lico import LicoModel, image_points
from ..models.text import TextFeatures
from ..spec import TrialConfig
from .chance import ChanceCheck
from .health_rules import (mm_warning, ot_collapse_warning, ot_convergence_warning,
                           ot_degenerate_warning, ot_inactive_warning)

GRAD_PROBES = 16  # gradient probes per trial, evenly spaced over its global steps (plus step 0: dose0)
REF_BATCH = 256  # images in the fixed reference batch (MM_ref, the mean image point)
REF_SEED = 20240613  # fixed: the reference batch is the same for every trial of a dataset


@contextlib.contextmanager
def _eval_mode(model: LicoModel) -> Iterator[LicoModel]:
    """The model in eval mode (dropout off, batch-norm on its running statistics), then as it was:
    the health probes run between training steps."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _mean_offdiag_cos(points: Tensor) -> float:
    """Mean pairwise cosine over the last two dims' rows, off the diagonal, mean over leading dims.
    points (..., N, D); N = 1 gives 1.0 (a single point is maximally degenerate)."""
    p = F.normalize(points.float(), dim=-1)
    n = p.shape[-2]
    if n < 2:
        return 1.0
    cos = p @ p.transpose(-1, -2)  # (..., N, N)
    return ((cos.sum((-1, -2)) - cos.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))).mean().item()


def between_class_cos(points: Tensor) -> float:
    """Mean cosine between points of different classes, points (K, N, D); K = 1 gives nan."""
    K, N = points.shape[:2]
    if K < 2:
        return float("nan")
    p = F.normalize(points.float().flatten(0, 1), dim=-1)  # (K*N, D)
    cos = p @ p.T
    same = torch.block_diag(*[torch.ones(N, N, device=p.device)] * K).bool()
    return cos[~same].mean().item()


def gradient_norms(weighted: list[Optional[Tensor]], fmap: Tensor) -> Tensor:
    """Norms (T,) of each weighted loss term's gradient at the feature map fmap (B, C, H, W); 0 for a
    term that is off or carries no gradient. Only entries != 0 count: they are what passes on to the
    backbone (a ReLU's backward); a dead channel's gradient through F.normalize is ~1/eps there and
    reaches no parameter."""
    scale = 1024.0 if fmap.dtype == torch.float16 else 1.0  # fp16: keep small gradients from flushing
    norms = []
    for term in weighted:
        g = None
        if term is not None and term.requires_grad:
            g, = torch.autograd.grad(term * scale, fmap, retain_graph=True, allow_unused=True)
        norms.append((g.float() * (fmap != 0)).norm() / scale if g is not None
                     else fmap.new_zeros((), dtype=torch.float32))
    return torch.stack(norms)


def fractions_and_doses(norms: Tensor) -> tuple[Tensor, Tensor]:
    """From gradient norms (ce, mm, ot): the squared-norm fractions (3,) and the doses (2,) =
    (|g_mm|, |g_ot|) / |g_ce|."""
    sq = norms.square()
    return sq / sq.sum().clamp_min(1e-30), norms[1:] / norms[0].clamp_min(1e-30)


class Health:
    """Collects the health metrics of one trial. Call order per step: `before_forward(global_step)`,
    forward, `after_forward(global_step, logits, y, terms)` (before backward); per epoch `epoch_end()`."""

    def __init__(self, model: LicoModel, cfg: TrialConfig, data, device: torch.device,
                 log: Callable[[str], None], total_steps: int):
        self.model, self.cfg, self.log = model, cfg, log
        self.active = model.prompts is not None
        self.probe_every = max(1, total_steps // GRAD_PROBES)
        self.mm_ref0: Optional[float] = None
        self.between0: Optional[float] = None
        self.dose0: Optional[list[float]] = None
        self.ref_text: Optional[Tensor] = None  # (K, D) pooled text features before training
        self.warned: list[HealthWarning] = []
        self.ref = None
        if self.active:
            g = torch.Generator().manual_seed(REF_SEED)
            x, y = next(iterate_batches(data.train, REF_BATCH, shuffle=True, seed=g))
            self.ref = (x.to(device), y.to(device))
        self._reset()

    # ------------------------------------------------------------------ state across epochs and resumes

    def restore(self, history: list[dict]) -> None:
        """Continue a resumed trial: the untrained MM_ref and the warnings already given."""
        for h in history:
            if self.mm_ref0 is None and h.get(MM_REF0) is not None:
                self.mm_ref0 = h[MM_REF0]
            for w in read_health_warnings(h.get(HEALTH_WARNINGS)):
                # an earlier end's at-chance verdict is not carried on: final_check judges the final model
                if w not in self.warned and w.kind not in CHANCE_KINDS:
                    self.warned.append(w)

    def start(self) -> None:
        """Before the first step: the untrained model's text features (MM_ref's fixed target), MM_ref
        and OT's between-class cosine, unless restored from a checkpoint."""
        if not self.active:
            return
        if self.cfg.lico.alpha > 0 and self.ref_text is None:
            self.ref_text = self._pooled_text()
        if self.cfg.lico.alpha > 0 and self.mm_ref0 is None:
            self.mm_ref0 = self.mm_ref()
        if self.model.uses_ot and self.between0 is None:
            self.between0 = self._text_cos()[TEXT_COS_BETWEEN]

    def state(self) -> dict:
        """For the checkpoint: what a resumed trial needs to continue the same health curves."""
        return {"ref_text": self.ref_text, "mm_ref0": self.mm_ref0, "between0": self.between0, "dose0": self.dose0}

    def load_state(self, state: Optional[dict]) -> None:
        if state:
            self.ref_text, self.mm_ref0 = state.get("ref_text"), state.get("mm_ref0")
            self.between0, self.dose0 = state.get("between0"), state.get("dose0")

    def _reset(self) -> None:
        self.iters = 0
        self.err: Optional[Tensor] = None
        self.fracs: Optional[Tensor] = None  # (3,) sum over the epoch's probes of the squared-norm fractions
        self.doses: Optional[Tensor] = None  # (2,) sum over the epoch's probes of the dose ratios
        self.n_probes = 0

    # ------------------------------------------------------------------ per step

    def before_forward(self, global_step: int) -> None:
        self.model.keep_fmap = self.active and global_step % self.probe_every == 0

    def after_forward(self, global_step: int, logits: Tensor, y: Tensor, terms: dict[str, Tensor]) -> None:
        """Per step: OT diagnostics (kept as tensors); on probe steps the gradient fractions and doses."""
        if not self.active:
            return
        info = self.model.last_ot
        if info is not None:
            self.iters = max(self.iters, info.iters)
            self.err = info.marginal_err if self.err is None else torch.maximum(self.err, info.marginal_err)
        fmap = self.model.last_fmap
        if fmap is None:
            return
        self.model.last_fmap, self.model.keep_fmap = None, False
        weighted = self.model.weighted(terms)
        norms = gradient_norms([self.model.ce(logits, y), weighted.get("mm"), weighted.get("ot")], fmap)
        frac, dose = fractions_and_doses(norms)
        if global_step == 0:  # the untrained model: its dose, not part of the training averages
            self.dose0 = dose.tolist()
            return
        self.fracs = frac if self.fracs is None else self.fracs + frac
        self.doses = dose if self.doses is None else self.doses + dose
        self.n_probes += 1

    # ------------------------------------------------------------------ per epoch

    @torch.no_grad()
    def _pooled_text(self) -> Tensor:
        with _eval_mode(self.model) as model:
            return model.prompts().pooled.detach().clone()  # (K, D)

    @torch.no_grad()
    def mm_ref(self) -> float:
        """MM on the fixed batch against the *untrained* text features, at the reference temperature
        for both sides, model in eval mode: it changes only when the image manifold moves (a text
        side collapsing towards the images, or a growing tau, cannot lower it)."""
        with _eval_mode(self.model) as model:
            x, y = self.ref
            _, _, emb = model.classifier.forward_all(x)
            text = TextFeatures(points=self.ref_text[:, None], pooled=self.ref_text)
            return model.mm_term(emb, y, text, temperature=self.cfg.lico.mm.reference_temperature).item()

    @torch.no_grad()
    def _text_cos(self) -> dict:
        """The cosines of the text points: as encoded, and OT's (within, between classes, to the images)."""
        with _eval_mode(self.model) as model:
            text = model.prompts()
            m = {TEXT_COS: _mean_offdiag_cos(text.points)}  # (K, N, D)
            if model.uses_ot:
                points = model.ot_text_points(text).float()  # (K, N, P)
                m[TEXT_COS_PROJ] = _mean_offdiag_cos(points)
                m[TEXT_COS_BETWEEN] = between_class_cos(points)
                _, fmap, _ = model.classifier.forward_all(self.ref[0])
                mean_image = F.normalize(image_points(fmap, self.cfg.lico.ot.points).float(), dim=-1).mean((0, 1))
                m[TEXT_COS_IMAGE] = F.cosine_similarity(points, mean_image.expand_as(points), dim=-1).mean().item()
            m[CLASS_TEXT_COS] = _mean_offdiag_cos(text.pooled)  # (K, D)
            return m

    def epoch_end(self) -> dict:
        """The epoch's health metrics (and `warnings`: all given so far); logs a line and any new warning."""
        if not self.active:
            return {}
        lico, model = self.cfg.lico, self.model
        m: dict = {}
        if lico.alpha > 0:
            m[TAU] = model.temperature().item()
            target = model.temperature.target_tau()
            if target is not None:
                m[TAU_TARGET] = target.item()
            m[MM_REF] = self.mm_ref()
            m[MM_REF0] = self.mm_ref0
            m[MM_REF_CHANGE] = (m[MM_REF] - self.mm_ref0) / max(abs(self.mm_ref0), 1e-12)
        if model.uses_ot:
            m[SINKHORN_ITERS] = self.iters
            if self.err is not None:
                m[MARGINAL_ERR] = self.err.item()
        m.update(self._text_cos())
        if model.uses_ot and self.between0 is not None:
            m[TEXT_COS_BETWEEN0] = self.between0
        if self.n_probes:
            for name, v in zip(TERMS, (self.fracs / self.n_probes).tolist()):
                m[grad_frac(name)] = v
            for name, v in zip(TERMS[1:], (self.doses / self.n_probes).tolist()):
                m[dose(name)] = v
        if self.dose0 is not None:
            for name, v in zip(TERMS[1:], self.dose0):
                m[dose(name, untrained=True)] = v
        self._reset()
        self.log("health: " + " ".join(f"{k.removeprefix('health/')} {_fmt(v)}" for k, v in m.items()))
        for w in self._warnings(m):
            if w.kind not in {x.kind for x in self.warned}:  # once per kind
                self.warned.append(w)
                self.log(f"WARNING {w}")
        # Numeric flags reach the results table and `report` as metric columns (text cannot: only
        # numbers are kept as final metrics); the text goes to the log and metrics.json.
        given = {w.kind for w in self.warned}
        for kind in WARNING_KINDS:
            m[warn_flag(kind)] = float(kind in given)
        m[HEALTH_WARNINGS] = health_text(self.warned)
        return m

    def final_check(self, check: ChanceCheck, what: str = "test accuracy") -> dict:
        """After the last epoch, for every arm: the explained model's chance check (chance.py) as
        metrics, its 0/1 flags `health/warn/at_chance|collapsed`, and its warnings (logged, and
        added to `warned` and the `health/warnings` text). A resumed trial's earlier verdict is
        replaced: only the final model counts."""
        self.warned = [w for w in self.warned if w.kind not in CHANCE_KINDS]
        for w in check.warnings(what):
            self.warned.append(w)
            self.log(f"WARNING {w}")
        return {**check.metrics(), HEALTH_WARNINGS: health_text(self.warned)}

    @staticmethod
    def final_keys() -> tuple[str, ...]:
        """The numeric keys `final_check` reports (padded with NaN into a trial's first report; the
        `health/warnings` text is not: a NaN there would read as a numeric metric)."""
        return CHANCE_KEYS

    def _warnings(self, m: dict) -> list[HealthWarning]:
        lico, temp = self.cfg.lico, self.model.temperature
        out = []
        if lico.alpha > 0:
            out.append(mm_warning(m, temp.initial if temp.learnable else None))
        if self.model.uses_ot:
            out.append(ot_degenerate_warning(self.model.prompts.n_points, lico.ot.target, m[TEXT_COS_PROJ]))
            out.append(ot_collapse_warning(m[TEXT_COS_BETWEEN], self.between0, m.get(TEXT_COS_IMAGE)))
            if MARGINAL_ERR in m:
                out.append(ot_convergence_warning(m[MARGINAL_ERR], m[SINKHORN_ITERS]))
            out.append(ot_inactive_warning(m, lico.ot.gradient))
        return [w for w in out if w]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
