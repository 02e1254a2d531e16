"""Which searched fields cannot change training in a cell (no Ray): a sweep over such a field
spends trials on copies of one run, and the dashboard would rank the field's "importance" on noise.

Measured case (issue 32): 6 Optuna trials over lico.ot.epsilon (0.0012 to 0.66) with text.features
'eot' all ended at val/acc 82.5784 to the last digit, and the dashboard ranked epsilon's importance
1.0: with one text point per class the transport plan is fixed, whatever epsilon.

Each rule below is one function of a resolved TrialConfig that returns why the fields it covers
cannot act in that config (None when they may). A rule reads only what `models/lico.py`,
`losses.py` and `train/parts.py` read; it names a field inert only when training provably does not
depend on it (the same gradients at every step), so it leaves alone fields that change only what
torch's random generator draws next (e.g. the projection's size under a gradient-free OT).

A field is judged per cell (arms x grid axes): inert in the cell when a rule holds at every value
the search can give the fields the rules read (`distribution_bounds`: choices, the bounds of a
range), including the field's own values. `plan_search` refuses a new sweep whose searched field
is inert in every cell (unless `search.allow_inert` lists it) and notes the arms where it is
inert in some; the dashboard leaves those arms out of that field's plots and importance.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Optional

from pydantic import ValidationError

from ..errors import SpecError
from ..keys import is_seed
from ..spec import MMConfig, OTConfig, StaticTextConfig, TextConfig, TrialConfig
from ..spec.checks import distribution_bounds
from .resolve import resolve_trial

OT = frozenset(f"lico.ot.{n}" for n in OTConfig.model_fields)
MM = frozenset(f"lico.mm.{n}" for n in MMConfig.model_fields)
STATIC = frozenset(f"text.static.{n}" for n in StaticTextConfig.model_fields)
TEXT = frozenset(f"text.{n}" for n in TextConfig.model_fields) | STATIC | {"train.text_lr"}
# What only a language encoder reads (the static encoder has no prompts, tokenizer or weights).
LANGUAGE = frozenset({"text.model", "text.pretrained", "text.ctx_init", "text.max_length", "text.class_token_position",
                      "text.class_specific", "text.context_copies", "text.precision", "text.class_names",
                      "text.class_names_seed"})  # (train.text_lr still moves OT's projection and tau)
PLAN_SHAPE = frozenset({"lico.ot.epsilon", "lico.ot.max_iter", "lico.ot.tol", "lico.ot.solver"})
# The fields the rules read: a searched one among them is probed at each of its values.
CONDITIONS = frozenset({"lico.alpha", "lico.beta", "lico.ot.gradient", "lico.ot.target", "lico.ot.anchors",
                        "lico.ot.spread_weight", "lico.mm.temperature_form", "lico.mm.text_gradient",
                        "text.features", "text.n_ctx", "text.ctx_init", "text.encoder"})
MAX_PROBES = 256     # value combinations probed per cell and field; beyond: the field counts as active


# ----------------------------------------------------------------------------- facts the rules share

def _projection(cfg: TrialConfig) -> bool:
    """OT's text points come from the learned MLP h (models/lico.py builds `proj`)."""
    return cfg.lico.beta > 0 and cfg.lico.ot.anchors == "learned"


def text_points_per_class(cfg: TrialConfig) -> Optional[int]:
    """N, the text points of one class (PromptLearner.n_points), or None when only the tokenizer
    knows (a ctx_init phrase sets n_ctx)."""
    t = cfg.text
    if t.features == "eot":
        return 1
    if t.ctx_init is not None:
        return None
    return t.n_ctx + 1 if t.features == "per_token" else t.n_ctx


# ----------------------------------------------------------------------------- the rules

def lico_off(cfg: TrialConfig) -> Optional[str]:
    if cfg.lico.alpha == 0 and cfg.lico.beta == 0:
        return ("lico.alpha and lico.beta are 0: LICO is off, so no text side is built and neither MM nor OT "
                "is computed (train/parts.py)")
    return None


def ot_off(cfg: TrialConfig) -> Optional[str]:
    if cfg.lico.beta == 0:
        return "lico.beta is 0: the OT term (and its spread penalty) is not computed"
    return None


def ot_without_gradient(cfg: TrialConfig) -> Optional[str]:
    if cfg.lico.beta > 0 and cfg.lico.ot.gradient == "none":
        return ("lico.ot.gradient is 'none': OT is computed under no_grad, so its value enters the loss but "
                "never its gradient")
    return None


def fixed_plan(cfg: TrialConfig) -> Optional[str]:
    if cfg.lico.beta > 0 and cfg.lico.ot.target == "own_class" and text_points_per_class(cfg) == 1:
        why = "text.features 'eot'" if cfg.text.features == "eot" else f"text.n_ctx 1 with features '{cfg.text.features}'"
        return (f"{why} gives one text point per class and lico.ot.target is 'own_class': all N image points "
                f"go to that one point, so the transport plan is 1/N each whatever epsilon, max_iter, tol or "
                f"the solver (lico.ot.target 'all_classes' transports to all K points)")
    return None


def mm_off(cfg: TrialConfig) -> Optional[str]:
    if cfg.lico.alpha == 0:
        return "lico.alpha is 0: the MM term is not computed (text.pooled is read by MM only)"
    return None


def fixed_temperature(cfg: TrialConfig) -> Optional[str]:
    if cfg.lico.mm.temperature_form == "fixed":
        return ("lico.mm.temperature_form is 'fixed': tau is a constant inside its bounds, so the bounds and "
                "its weight decay have nothing to act on")
    return None


def health_only(cfg: TrialConfig) -> Optional[str]:
    return ("only the health check reads it (MM measured at a fixed tau on a fixed batch): it changes "
            "health/* readings, never training")


def no_projection(cfg: TrialConfig) -> Optional[str]:
    if not _projection(cfg):
        return "no projection h is built (OT is off or its anchors are frozen), so its width and dropout do not exist"
    return None


def one_point_pooling(cfg: TrialConfig) -> Optional[str]:
    if text_points_per_class(cfg) == 1:
        return "one text point per class: its first point and the mean of its points are the same"
    return None


def not_rolled(cfg: TrialConfig) -> Optional[str]:
    if cfg.text.features != "rolled":
        return f"text.features is '{cfg.text.features}': context copies exist only with features 'rolled'"
    return None


def not_open_clip(cfg: TrialConfig) -> Optional[str]:
    if cfg.text.encoder != "open_clip":
        return f"text.encoder is '{cfg.text.encoder}': only the open_clip encoder reads text.pretrained"
    return None


def no_language(cfg: TrialConfig) -> Optional[str]:
    if cfg.text.encoder == "static":
        return ("text.encoder is 'static': fixed class vectors, no prompts, tokenizer or weights "
                "(models/text/static.py)")
    return None


def not_static(cfg: TrialConfig) -> Optional[str]:
    if cfg.text.encoder != "static":
        return f"text.encoder is '{cfg.text.encoder}': only the static encoder reads text.static"
    return None


def names_not_deranged(cfg: TrialConfig) -> Optional[str]:
    if cfg.text.class_names != "deranged":
        return "text.class_names is 'dataset': the derangement's seed is read only with 'deranged'"
    return None


def phrase_sets_n_ctx(cfg: TrialConfig) -> Optional[str]:
    if cfg.text.ctx_init is not None:
        return "text.ctx_init is set: the number of context vectors is taken from the phrase"
    return None


def text_read_once(cfg: TrialConfig) -> Optional[str]:
    if cfg.lico.alpha == 0 and cfg.lico.beta > 0 and cfg.lico.ot.anchors == "frozen":
        return ("lico.alpha is 0 and OT's anchors are frozen: the text side is read once, before training "
                "(untrained prompts, eval mode, no autocast), and never trained")
    return None


def text_untrained(cfg: TrialConfig) -> Optional[str]:
    lico = cfg.lico
    mm_trains = lico.alpha > 0 and lico.mm.text_gradient
    ot_trains = _projection(cfg) and (lico.ot.gradient == "envelope" or lico.ot.spread_weight > 0)
    tau_learns = lico.alpha > 0 and lico.mm.temperature_form != "fixed"    # its group also takes text_lr
    if lico.enabled and not (mm_trains or ot_trains or tau_learns):
        return ("no term sends a gradient to the text side or the MM temperature (MM's text side detached or "
                "MM off, OT without a gradient or with frozen anchors), so their learning rate moves nothing")
    return None


# (covered fields, rule): the first rule that holds gives the reason.
RULES: list[tuple[frozenset, Callable[[TrialConfig], Optional[str]]]] = [
    (TEXT | MM | OT, lico_off),
    (OT, ot_off),
    (PLAN_SHAPE | {"lico.ot.target", "lico.beta"}, ot_without_gradient),
    (PLAN_SHAPE, fixed_plan),
    (MM | {"text.pooled"}, mm_off),
    (frozenset({"lico.mm.temperature_min", "lico.mm.temperature_max", "lico.mm.temperature_weight_decay"}),
     fixed_temperature),
    (frozenset({"lico.mm.reference_temperature"}), health_only),
    (frozenset({"text.proj_hidden", "text.proj_dropout"}), no_projection),
    (frozenset({"text.pooled"}), one_point_pooling),
    (frozenset({"text.context_copies"}), not_rolled),
    (LANGUAGE, no_language),
    (STATIC, not_static),
    (frozenset({"text.class_names_seed"}), names_not_deranged),
    (frozenset({"text.pretrained"}), not_open_clip),
    (frozenset({"text.n_ctx"}), phrase_sets_n_ctx),
    (frozenset({"text.shuffle_ctx", "text.finetune", "text.precision", "train.text_lr"}), text_read_once),
    (frozenset({"train.text_lr"}), text_untrained),
]


def why_inert(cfg: TrialConfig, path: str) -> Optional[str]:
    """Why `path` cannot change the training of a trial with config `cfg`, or None."""
    for covered, rule in RULES:
        if path in covered and (reason := rule(cfg)):
            return reason
    return None


# ----------------------------------------------------------------------------- over a sweep's cells

@dataclass
class Inert:
    """A searched field that cannot act in some cells: those cells (as in Plan.cells), the arms all
    of whose cells they are, and each reason with where it holds."""
    path: str
    cells: list[dict] = field(default_factory=list)
    arms: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)     # reason -> where it holds (arms or cells)
    where: str = ""                                            # all its cells in words
    everywhere: bool = False

    @property
    def reason(self) -> str:
        """Each reason with where it holds: one sentence."""
        if len(self.reasons) == 1:
            return next(iter(self.reasons))
        return "; ".join(f"{r} (in {where})" for r, where in self.reasons.items())


def _where(some: list[dict], cells: list[dict]) -> str:
    """`some` of the sweep's `cells` in words: the arms all of whose cells are among them, then the other cells."""
    keys = {_key(c) for c in some}
    arms = [a for a in dict.fromkeys(c["arm"] for c in cells if "arm" in c)
            if all(_key(c) in keys for c in cells if c["arm"] == a)]
    rest = [c for c in some if c.get("arm") not in arms]
    parts = [f"arm{'s' if len(arms) > 1 else ''} {', '.join(arms)}"] if arms else []
    if rest:
        shown = "; ".join(", ".join(f"{k}={v}" for k, v in c.items()) for c in rest[:4])
        parts.append(f"cells {shown}" + (f" and {len(rest) - 4} more" if len(rest) > 4 else ""))
    return " and ".join(parts)


def _probes(dist: tuple[str, list]) -> list:
    """The values a searched field is judged at: a grid's values, a distribution's bounds."""
    kind, args = dist
    return list(args) if kind == "grid" else distribution_bounds(kind, args)


def inert_fields(runtime: dict, cells: list[dict], space: dict[str, tuple[str, list]]) -> dict[str, Inert]:
    """Each searched field (path -> (kind, args), grid axes included) that cannot act in at least
    one of `cells` (Plan.cells, resolved with `runtime` = Plan.runtime()). Seeds are left alone."""
    out: dict[str, Inert] = {}
    for path, dist in space.items():
        if is_seed(path):
            continue
        probed = [p for p in space if p != path and p in CONDITIONS and p not in cells[0]] if cells else []
        axes = [(path, _probes(dist))] + [(p, _probes(space[p])) for p in probed]
        combos = list(itertools.islice(itertools.product(*(v for _, v in axes)), MAX_PROBES + 1))
        if len(combos) > MAX_PROBES:
            continue
        found, seen, by_reason = Inert(path), {}, {}
        for cell in cells:
            # Cells alike in their arm and the rules' fields are alike here: judged once.
            key = tuple(repr(v) for a, v in cell.items() if a == "arm" or a in CONDITIONS)
            if key not in seen:
                seen[key] = [r for c in combos
                             if (r := _judged(runtime, {**cell, **dict(zip((a for a, _ in axes), c))}, path)) != INVALID]
            if seen[key] and all(seen[key]):
                found.cells.append(cell)
                by_reason.setdefault(seen[key][0], []).append(cell)
        if found.cells:
            inert = {_key(c) for c in found.cells}
            arms = list(dict.fromkeys(c["arm"] for c in cells if "arm" in c))
            found.arms = [a for a in arms if all(_key(c) in inert for c in cells if c["arm"] == a)]
            found.reasons = {r: _where(some, cells) for r, some in by_reason.items()}
            found.where = _where(found.cells, cells)
            found.everywhere = len(found.cells) == len(cells)
            out[path] = found
    return out


INVALID = "invalid"


def _judged(runtime: dict, params: dict, path: str) -> Optional[str]:
    """why_inert of the trial with these params, or INVALID for a combination of values that is no
    valid trial (that trial would fail; it says nothing about the others)."""
    try:
        return why_inert(resolve_trial(runtime, params), path)
    except ValidationError:
        return INVALID


def _key(cell: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in cell.items()))


def check_inert(found: dict[str, Inert], allowed: list[str], space: dict) -> None:
    """Refuse a searched field that cannot act in any cell, unless search.allow_inert lists it."""
    for path in allowed:
        if path not in space:
            raise SpecError(f"search.allow_inert names '{path}', which search.space does not search; remove it "
                            f"from allow_inert (it lists searched fields that are inert on purpose).")
    for path, inert in found.items():
        if inert.everywhere and path not in allowed:
            raise SpecError(
                f"search.space.{path} cannot change training in any trial of this sweep: {inert.reason}. Every "
                f"value would train the same model, so the search would spend its trials on copies and rank "
                f"noise as importance. Remove {path} from search.space, change what makes it inert, or, if this "
                f"is on purpose (a control), list it in search.allow_inert: [{path}].")


def inert_notes(found: dict[str, Inert]) -> list[str]:
    """One line per searched field that cannot act in some of the sweep's cells (what `run` prints)."""
    lines = []
    for path, inert in found.items():
        where = "any cell (search.allow_inert lists it)" if inert.everywhere else inert.where
        shown = f"; the dashboard leaves arm{'s' if len(inert.arms) > 1 else ''} {', '.join(inert.arms)} out of " \
                f"its plot and importance" if inert.arms and not inert.everywhere else ""
        lines.append(f"{path} cannot act in {where}: {inert.reason}{shown}")
    return lines
