"""Health checks of the LICO terms, every epoch of every trial (DESIGN.md section 1, failure modes).

A LICO trial can look healthy in its loss log and still train plain cross-entropy: a learnable
temperature shared by both MM softmaxes runs away (MM -> 0 whatever the geometry), one text point
per class makes the OT plan fixed, Sinkhorn at small epsilon stops far from a transport plan. So
each epoch reports, as metrics `health/...` and one log line:

  tau, tau_target        the MM temperatures (tau_target only when separate)
  mm_ref, mm_ref0        MM of a fixed batch (eval mode) against the untrained model's text features,
                         at one fixed reference temperature for both sides
                         (lico.mm.reference_temperature), now and before the first step;
  mm_ref_change          (mm_ref - mm_ref0) / mm_ref0: negative when the image manifold moved
                         towards the text one
  sinkhorn_iters         most Sinkhorn iterations of any solve in the epoch
  marginal_err           largest final row-marginal L1 error of any solve in the epoch
  text_cos               mean pairwise cosine of each class's N text points (mean over classes;
                         1 = all identical), as the text encoder gives them (the degeneracy test)
  text_cos_proj          the same after the projection h, i.e. what OT sees (a freshly initialised
                         ReLU MLP maps distinct points close together: 0.42 -> ~0.96 measured)
  class_text_cos         mean pairwise cosine between the K classes' pooled text features (MM's text
                         side; near 1 = the classes collapsed together)
  grad_share/{ce,mm,ot}  each weighted term's share of the gradient norm at the backbone's feature
                         map F (what flows into the backbone), mean over the sampled steps

and warns, once each, in the log, as the text `health/warnings` and as 0/1 flags
`health/warn/<kind>` (numbers reach the results table); metrics.json lists them as `warnings`. Everything per step stays on
the device (no sync); values are read once per epoch.

At the end of every trial, LICO or not, `final_check` adds whether the explained model learned
anything at all (lico_tune/chance.py: 'at chance', 'collapsed'), with the same flags and texts.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from .chance import CHANCE_KEYS, KINDS as CHANCE_KINDS, ChanceCheck
from .data.loader import iterate_batches
from .layout import HEALTH_WARNINGS
from .models.lico import LicoModel
from .models.text import TextFeatures
from .spec import TrialConfig

GRAD_EVERY = 10  # steps between gradient-share samples (step 0 of each epoch always sampled)
REF_BATCH = 256  # images in the fixed MM_ref batch
MARGINAL_ERR_WARN = 0.01  # final row-marginal L1 error above which a plan is "not converged" (1% of the mass)
TAU_GROWTH_WARN = 2.0  # tau grown by this factor over its initial value, with MM_ref not falling: inactive
NEAR_DUPLICATE_COS = 0.99  # mean cosine of a class's text points above which OT is near-degenerate
SHARE_FLOOR = 0.01  # a term with a smaller share of the backbone gradient trains (almost) nothing
REF_SEED = 20240613
WARNING_KINDS = ("MM inactive", "OT inactive", "OT degenerate", "OT not converged")  # fixed: the MM_ref batch is the same for every trial of a dataset


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


class Health:
    """Collects the health metrics of one trial. Call order per epoch: `before_forward(step)`,
    forward, `after_forward(step, logits, y, terms)` (before backward), ..., `epoch_end(epoch)`."""

    def __init__(self, model: LicoModel, cfg: TrialConfig, data, device: torch.device,
                 log: Callable[[str], None]):
        self.model, self.cfg, self.log = model, cfg, log
        self.active = model.prompts is not None
        self.mm_ref0: Optional[float] = None
        self.ref_text: Optional[Tensor] = None  # (K, D) pooled text features before training
        self.warned: list[str] = []
        if self.active and cfg.lico.alpha > 0:
            g = torch.Generator().manual_seed(REF_SEED)
            x, y = next(iterate_batches(data.train, REF_BATCH, shuffle=True, seed=g))
            self.ref = (x.to(device), y.to(device))
        else:
            self.ref = None
        self._reset()

    # ------------------------------------------------------------------ state across epochs and resumes

    def restore(self, history: list[dict]) -> None:
        """Continue a resumed trial: the untrained MM_ref and the warnings already given."""
        for h in history:
            if self.mm_ref0 is None and h.get("health/mm_ref0") is not None:
                self.mm_ref0 = h["health/mm_ref0"]
            for w in filter(None, (h.get(HEALTH_WARNINGS) or "").split("; ")):
                # an earlier end's at-chance verdict is not carried on: final_check judges the final model
                if w not in self.warned and w.split(":")[0] not in CHANCE_KINDS:
                    self.warned.append(w)

    def start(self) -> None:
        """Before the first step: the untrained model's text features (MM_ref's fixed target) and
        MM_ref, unless restored from a checkpoint."""
        if self.ref is not None and self.ref_text is None:
            self.ref_text = self._pooled_text()
        if self.ref is not None and self.mm_ref0 is None:
            self.mm_ref0 = self.mm_ref()

    def state(self) -> dict:
        """For the checkpoint: what a resumed trial needs to continue the same health curves."""
        return {"ref_text": self.ref_text, "mm_ref0": self.mm_ref0}

    def load_state(self, state: Optional[dict]) -> None:
        if state:
            self.ref_text, self.mm_ref0 = state.get("ref_text"), state.get("mm_ref0")

    def _reset(self) -> None:
        self.iters = 0
        self.err: Optional[Tensor] = None
        self.shares: Optional[Tensor] = None  # (3,) sum over sampled steps of (ce, mm, ot) shares
        self.n_shares = 0

    # ------------------------------------------------------------------ per step

    def before_forward(self, step: int) -> None:
        self.model.keep_fmap = self.active and step % GRAD_EVERY == 0

    def after_forward(self, step: int, logits: Tensor, y: Tensor, terms: dict[str, Tensor]) -> None:
        """Per step: OT diagnostics (kept as tensors); on sampled steps the gradient shares."""
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
        lico = self.cfg.lico
        weighted = [F.cross_entropy(logits.float(), y), lico.alpha * terms["mm"] if "mm" in terms else None,
                    lico.beta * terms["ot"] if "ot" in terms else None]
        # fp16 feature maps: scale the losses so that small gradients do not flush to 0 (ratios unchanged)
        scale = 1024.0 if fmap.dtype == torch.float16 else 1.0
        norms = []
        for term in weighted:
            if term is None or not term.requires_grad:
                norms.append(fmap.new_zeros((), dtype=torch.float32))
                continue
            g, = torch.autograd.grad(term * scale, fmap, retain_graph=True, allow_unused=True)
            # Only entries != 0 pass on to the backbone (a ReLU's backward): a dead channel's gradient
            # through F.normalize is ~1/eps there and reaches no parameter, so it must not count.
            norms.append((g.float() * (fmap != 0)).norm() if g is not None
                         else fmap.new_zeros((), dtype=torch.float32))
        n = torch.stack(norms)  # (3,)
        share = n / n.sum().clamp_min(1e-30)
        self.shares = share if self.shares is None else self.shares + share
        self.n_shares += 1

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
        with _eval_mode(self.model) as model:
            text = model.prompts()
            m = {"health/text_cos": _mean_offdiag_cos(text.points)}  # (K, N, D)
            if model.proj is not None:
                m["health/text_cos_proj"] = _mean_offdiag_cos(model.proj(text.points))  # (K, N, P)
            m["health/class_text_cos"] = _mean_offdiag_cos(text.pooled)  # (K, D)
            return m

    def epoch_end(self) -> dict:
        """The epoch's health metrics (and `warnings`: all given so far); logs a line and any new warning."""
        if not self.active:
            return {}
        lico, model = self.cfg.lico, self.model
        m: dict = {}
        if lico.alpha > 0:
            m["health/tau"] = model.temperature().item()
            target = model.temperature.target_tau()
            if target is not None:
                m["health/tau_target"] = target.item()
            m["health/mm_ref"] = self.mm_ref()
            m["health/mm_ref0"] = self.mm_ref0
            m["health/mm_ref_change"] = (m["health/mm_ref"] - self.mm_ref0) / max(abs(self.mm_ref0), 1e-12)
        if lico.beta > 0:
            m["health/sinkhorn_iters"] = self.iters
            if self.err is not None:
                m["health/marginal_err"] = self.err.item()
        m.update(self._text_cos())
        if self.n_shares:
            for name, v in zip(("ce", "mm", "ot"), (self.shares / self.n_shares).tolist()):
                m[f"health/grad_share/{name}"] = v
        self._reset()
        self.log("health: " + " ".join(f"{k.removeprefix('health/')} {_fmt(v)}" for k, v in m.items()))
        for w in self._warnings(m):
            if w.split(":")[0] not in {x.split(":")[0] for x in self.warned}:  # once per kind
                self.warned.append(w)
                self.log(f"WARNING {w}")
        # Numeric flags reach the results table and `report` as metric columns (text cannot: only
        # numbers are kept as final metrics); the text goes to the log and metrics.json.
        given = {w.split(":")[0] for w in self.warned}
        for kind in WARNING_KINDS:
            m[f"health/warn/{kind.lower().replace(' ', '_')}"] = float(kind in given)
        m[HEALTH_WARNINGS] = "; ".join(self.warned)
        return m

    def final_check(self, check: ChanceCheck, what: str = "test accuracy") -> dict:
        """After the last epoch, for every arm: the explained model's chance check (chance.py) as
        metrics, its 0/1 flags `health/warn/at_chance|collapsed`, and its warnings (logged, and
        added to `warned` and the `health/warnings` text). A resumed trial's earlier verdict is
        replaced: only the final model counts."""
        self.warned = [w for w in self.warned if w.split(":")[0] not in CHANCE_KINDS]
        for w in check.warnings(what):
            self.warned.append(w)
            self.log(f"WARNING {w}")
        return {**check.metrics(), HEALTH_WARNINGS: "; ".join(self.warned)}

    @staticmethod
    def final_keys() -> tuple[str, ...]:
        """The numeric keys `final_check` reports (padded with NaN into a trial's first report; the
        `health/warnings` text is not: a NaN there would read as a numeric metric)."""
        return CHANCE_KEYS

    def _warnings(self, m: dict) -> list[str]:
        lico, temp = self.cfg.lico, self.model.temperature
        out = []
        if lico.alpha > 0:
            out.append(mm_warning(m, temp.initial if temp.learnable else None))
        if lico.beta > 0:
            out.append(ot_degenerate_warning(self.model.prompts.n_points, lico.ot.target, m["health/text_cos"]))
            if "health/marginal_err" in m:
                out.append(ot_convergence_warning(m["health/marginal_err"], m["health/sinkhorn_iters"]))
            if m.get("health/grad_share/ot", 1.0) < SHARE_FLOOR:
                why = (" (lico.ot.gradient none: the released code's no-gradient OT trains nothing, although "
                       "its loss is printed)" if lico.ot.gradient == "none" else "")
                out.append(f"OT inactive: {100 * m['health/grad_share/ot']:.2g}% of the backbone's gradient "
                           f"(floor {100 * SHARE_FLOOR:.0f}%){why}")
        return [w for w in out if w]


# ----------------------------------------------------------------------------- the warning rules

def mm_warning(m: dict, tau_initial: Optional[float]) -> Optional[str]:
    """'MM inactive' when a learnable tau (initially tau_initial; None = fixed) grew more than
    TAU_GROWTH_WARN-fold and MM at the reference temperature did not fall, or when MM's share of
    the backbone's gradient is below SHARE_FLOOR. m: the epoch's health metrics."""
    if tau_initial is not None and m["health/tau"] > TAU_GROWTH_WARN * tau_initial \
            and m["health/mm_ref_change"] >= 0:
        return (f"MM inactive: tau grew to {m['health/tau']:.3g} and MM at the reference temperature did "
                f"not fall ({m['health/mm_ref']:.4g} vs {m['health/mm_ref0']:.4g} untrained)")
    share = m.get("health/grad_share/mm")
    if share is not None and share < SHARE_FLOOR:
        grew = (f"tau grew to {m['health/tau']:.3g} and " if tau_initial is not None
                and m["health/tau"] > TAU_GROWTH_WARN * tau_initial else "")
        return (f"MM inactive: {grew}MM carries {100 * share:.2g}% of the backbone's gradient "
                f"(floor {100 * SHARE_FLOOR:.0f}%)")
    return None


def ot_convergence_warning(marginal_err: float, iters: int) -> Optional[str]:
    """'OT not converged' when a plan's final row-marginal L1 error exceeds MARGINAL_ERR_WARN."""
    if marginal_err > MARGINAL_ERR_WARN:
        return (f"OT not converged: marginal error {marginal_err:.2g} > {MARGINAL_ERR_WARN} after "
                f"{iters} iterations (raise lico.ot.max_iter or lico.ot.epsilon)")
    return None


def ot_degenerate_warning(n_points: int, target: str, text_cos: float) -> Optional[str]:
    """'OT degenerate' when each image is transported to one point (the plan is then fixed: every
    local feature sends all its mass there, whatever epsilon) or to near-duplicate points."""
    if n_points == 1 and target == "own_class":
        return "OT degenerate: one text point per class, epsilon has no effect"
    if text_cos > NEAR_DUPLICATE_COS:
        return (f"OT degenerate: the {n_points} text points of a class are near-duplicates "
                f"(mean cosine {text_cos:.4f}), epsilon has almost no effect")
    return None


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
