"""evaluate_saliency: every saliency metric of a trial, for each method, as flat metrics.

    saliency/<method>/insertion, deletion, overall   faithfulness (mean AUC over the images)
    saliency/<method>/insertion_lerf, deletion_lerf  the same, least relevant first ("lerf" in orderings)
    saliency/<method>/lerf_morf                      deletion_lerf - deletion (higher: the order matters)
    saliency/<method>/pointing, energy               2x2 grid pointing game (chance 0.25); by default
                                                     only without masks (grid=None)
    saliency/<method>/pointing_mask, energy_mask     on real masks/boxes, when `masks` is given
                                                     (chance: the mask's area share, see mask_area)
    saliency/<method>/road_morf, road_lerf,          ROAD (road=True): mean target probability over
        road_combined                                the percentiles; combined = mean (lerf - morf) / 2
    saliency/<method>/ses                            salience equivariance score
    saliency/<method>/sanity_top, sanity_full        cascading randomisation (when sanity=True):
                                                     mean Spearman after the top layer, after all
    saliency/<method>/smprt_top, smprt_full          smooth MPRT ("smooth" in mprt), same rows
    saliency/<method>/emprt                          efficient MPRT ("efficient" in mprt): entropy
                                                     ratio randomised / trained (> 1 expected)
    eval/mask_area                                   mean area share of the masks (when given; not
                                                     under saliency/: it belongs to no method)
    saliency/<method>/seconds                        wall time of this method's evaluation
No single number decides: deletion AUC, for one, rewards a shortcut-learning model.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..keys import MASK_AREA, SALIENCY_TAILS, SECONDS_TAIL
from ._util import SaliencyFn, as_targets, predict
from .equivariance import salience_equivariance
from .faithfulness import insertion_deletion
from .localisation import energy_masks, grid_localisation, pointing_game_masks
from .methods import make_saliency_fn
from .mprt import efficient_mprt, smooth_mprt
from .road import road as road_scores
from .sanity import cascading_randomisation


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How maps are scored: the fields of the spec's eval section that evaluate_saliency reads. No
    defaults here: the spec owns them (`Protocol.of(cfg.eval)`; a test writes `Protocol.of(EvalConfig(...))`)."""
    target: str                       # "label" explains the true class, "pred" the clean prediction
    batch_size: int                   # bounds the images per forward everywhere
    pixels_per_step: int | None
    blur_sigma: float
    rise_n_masks: int
    orderings: tuple[str, ...]        # "morf" (always: the RISE protocol) and/or "lerf"
    road: bool
    road_percentiles: tuple[float, ...]
    road_noise: float
    precision: str                    # autocast of the insertion/deletion forwards
    n_grids: int | None               # None: N // 4 (>= 1)
    ses: bool
    sanity: bool
    sanity_max_layers: int | None
    mprt: tuple[str, ...]             # "smooth" and/or "efficient"
    mprt_samples: int
    mprt_noise: float

    @classmethod
    def of(cls, eval_cfg) -> "Protocol":
        """The protocol of a spec's eval section (an EvalConfig)."""
        def value(name):
            v = getattr(eval_cfg, name)
            return tuple(v) if isinstance(v, list) else v
        return cls(**{f.name: value(f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class Settings:
    """The fixed settings of one evaluate_saliency call, what every metric reads besides the maps:
    the spec's protocol, what the images allow (masks given, the grid game played, the classes they
    hold: which metrics run, known before any map is drawn, so trial.py derives a trial's keys from
    the same answer), and the protocol's parts that are not spec fields (substrates, seeds, SES's
    crop scale, RISE's grid)."""
    protocol: Protocol
    masks: bool = False
    grid: bool = True
    n_classes: int = 4                  # the grid game needs >= 4
    target_layer: nn.Module | str | None = None   # CAM methods: None = the backbone's last feature map
    blur_kernel_size: int | None = None
    insertion_substrate: str = "blur"
    deletion_substrate: str = "zeros"
    grid_seed: int = 0
    ses_seed: int = 0
    ses_scale: tuple[float, float] = (0.5, 1.0)
    ses_flip_p: float = 0.5
    rise_cells: int = 8
    rise_p: float = 0.5
    rise_seed: int = 0

    @property
    def method_options(self) -> dict:
        """make_saliency_fn's keywords (also the sanity and MPRT metrics', which remake the method)."""
        p = self.protocol
        return dict(target_layer=self.target_layer, batch_size=p.batch_size, rise_n_masks=p.rise_n_masks,
                    rise_cells=self.rise_cells, rise_p=self.rise_p, rise_seed=self.rise_seed)


@dataclasses.dataclass
class Context:
    """What the metrics of one method read: the model, the images (N, C, H, W), labels and targets
    (N,), the method's maps (N, H, W) and saliency function, the call's Settings, and `curves`, where
    each metric leaves its per-image results."""
    model: nn.Module
    images: Tensor
    labels: Tensor
    targets: Tensor
    method: str
    fn: SaliencyFn
    maps: Tensor
    masks: Tensor | None
    settings: Settings
    curves: dict


@dataclasses.dataclass(frozen=True)
class Metric:
    """One row of the saliency metrics table: the key tails it writes (saliency/<method>/<tail>),
    when it runs, and how it computes them ({tail: value})."""
    tails: tuple[str, ...]
    wanted: Callable[[Settings], bool]
    compute: Callable[[Context], dict[str, float]]


def _faithfulness(c: Context, order: str = "morf") -> dict:
    s, p = c.settings, c.settings.protocol
    return insertion_deletion(c.model, c.images, c.maps, c.targets, p.pixels_per_step, p.batch_size,
                              p.blur_sigma, s.blur_kernel_size, insertion_substrate=s.insertion_substrate,
                              deletion_substrate=s.deletion_substrate, order=order, precision=p.precision)


def _morf(c: Context) -> dict[str, float]:
    faith = c.curves.setdefault("morf", _faithfulness(c))
    return {m: faith[m].mean().item() for m in ("insertion", "deletion", "overall")}


def _lerf(c: Context) -> dict[str, float]:
    lerf = c.curves["lerf"] = _faithfulness(c, "lerf")
    morf = c.curves.setdefault("morf", _faithfulness(c))
    return {"insertion_lerf": lerf["insertion"].mean().item(), "deletion_lerf": lerf["deletion"].mean().item(),
            "lerf_morf": (lerf["deletion"] - morf["deletion"]).mean().item()}


def _road(c: Context) -> dict[str, float]:
    p = c.settings.protocol
    r = c.curves["road"] = road_scores(c.model, c.images, c.maps, c.targets, list(p.road_percentiles),
                                       p.batch_size, p.road_noise)
    return {f"road_{m}": r[m].mean().item() for m in ("morf", "lerf", "combined")}


def _grid(c: Context) -> dict[str, float]:
    p = c.settings.protocol
    loc = grid_localisation(c.fn, c.images, c.labels, p.n_grids or max(1, len(c.images) // 4),
                            c.settings.grid_seed, p.batch_size)
    return {"pointing": loc["pointing"].mean().item(), "energy": loc["energy"].mean().item()}


def _masks(c: Context) -> dict[str, float]:
    return {"pointing_mask": pointing_game_masks(c.maps, c.masks).mean().item(),
            "energy_mask": energy_masks(c.maps, c.masks).mean().item()}


def _ses(c: Context) -> dict[str, float]:
    s = c.settings
    c.curves["ses"] = salience_equivariance(c.fn, c.images, c.targets, s.ses_seed, s.ses_scale,
                                            flip_p=s.ses_flip_p, batch_size=s.protocol.batch_size, maps=c.maps)
    return {"ses": c.curves["ses"].mean().item()}


def _top_full(rand: dict, prefix: str) -> dict[str, float]:
    return {f"{prefix}_top": rand["mean"][min(1, len(rand["mean"]) - 1)].item(), f"{prefix}_full": rand["mean"][-1].item()}


def _sanity(c: Context) -> dict[str, float]:
    s = c.settings
    rand = c.curves["sanity"] = cascading_randomisation(c.model, c.images, c.targets, c.method,
                                                        max_layers=s.protocol.sanity_max_layers, **s.method_options)
    return _top_full(rand, "sanity")


def _smprt(c: Context) -> dict[str, float]:
    s, p = c.settings, c.settings.protocol
    sm = c.curves["smprt"] = smooth_mprt(c.model, c.images, c.targets, c.method, p.mprt_samples, p.mprt_noise,
                                         p.sanity_max_layers, **s.method_options)
    return _top_full(sm, "smprt")


def _emprt(c: Context) -> dict[str, float]:
    em = c.curves["emprt"] = efficient_mprt(c.model, c.images, c.targets, c.method, **c.settings.method_options)
    return {"emprt": em["ratio"].mean().item()}


# The table: every saliency metric, one row each, in the order it is computed and reported.
METRICS = (
    Metric(SALIENCY_TAILS["morf"], lambda s: True, _morf),
    Metric(SALIENCY_TAILS["lerf"], lambda s: "lerf" in s.protocol.orderings, _lerf),
    Metric(SALIENCY_TAILS["road"], lambda s: s.protocol.road, _road),
    Metric(SALIENCY_TAILS["grid"], lambda s: s.grid and s.n_classes >= 4, _grid),
    Metric(SALIENCY_TAILS["masks"], lambda s: s.masks, _masks),
    Metric(SALIENCY_TAILS["ses"], lambda s: s.protocol.ses, _ses),
    Metric(SALIENCY_TAILS["sanity"], lambda s: s.protocol.sanity, _sanity),
    Metric(SALIENCY_TAILS["smprt"], lambda s: "smooth" in s.protocol.mprt, _smprt),
    Metric(SALIENCY_TAILS["emprt"], lambda s: "efficient" in s.protocol.mprt, _emprt),
)


def metric_tails(settings: Settings) -> list[str]:
    """The key tails (saliency/<method>/<tail>) evaluate_saliency writes under `settings`, 'seconds' last."""
    return [t for m in METRICS if m.wanted(settings) for t in m.tails] + [SECONDS_TAIL]


@dataclasses.dataclass
class SaliencyEvaluation:
    metrics: dict[str, float]  # flat, floats only: ready for a Tune report
    curves: dict[str, dict]  # method -> insertion_deletion result (+ "ses" per image), CPU tensors
    targets: Tensor  # (N,) the classes explained
    predictions: Tensor  # (N,) the model's predictions on the clean images
    maps: dict[str, Tensor]  # method -> (N, H, W), only with return_maps=True


def compute_maps(fn: SaliencyFn, images: Tensor, targets: Tensor, batch_size: int) -> Tensor:
    return torch.cat([fn(images[i:i + batch_size], targets[i:i + batch_size])
                      for i in range(0, len(images), batch_size)])


def evaluate_saliency(model: nn.Module, images: Tensor, labels, methods: Sequence[str], protocol: Protocol, *,
                      masks: Tensor | None = None, grid: bool | None = None, return_maps: bool = False,
                      **fixed) -> SaliencyEvaluation:
    """All saliency metrics for images (N, C, H, W) (normalised), labels (N,), under `protocol` (the
    spec's eval section). `fixed`: any of Settings' fields that are not spec fields (target_layer,
    substrates, seeds, SES's crop scale, RISE's grid); their defaults are the protocol's.

    The grid game always targets each tile's true class; it is skipped when the images hold fewer
    than 4 classes; grid=None plays it only when no masks are given (real boxes replace it). The
    model's mode, requires_grad flags and .grad are left as they were.
    """
    p = protocol
    if p.target not in ("label", "pred"):
        raise ValueError(f"target must be 'label' or 'pred', got '{p.target}'")
    bad = (set(p.orderings) - {"morf", "lerf"}) | {f"mprt:{m}" for m in set(p.mprt) - {"smooth", "efficient"}}
    if bad:
        raise ValueError(f"unknown orderings/mprt {sorted(bad)}; orderings: morf, lerf; mprt: smooth, efficient")
    labels = as_targets(labels, len(images))
    preds = predict(model, images, p.batch_size)
    targets = labels if p.target == "label" else preds
    settings = Settings(p, masks is not None, masks is None if grid is None else grid, len(torch.unique(labels)),
                        **fixed)
    metrics: dict[str, float] = {}
    curves: dict[str, dict] = {}
    all_maps: dict[str, Tensor] = {}
    if masks is not None:
        metrics[MASK_AREA] = masks.flatten(1).float().mean().item()
    for method in methods:
        t0 = time.perf_counter()
        fn = make_saliency_fn(model, method, **settings.method_options)
        maps = compute_maps(fn, images, targets, p.batch_size)  # (N, H, W)
        ctx = Context(model, images, labels, targets, method, fn, maps, masks, settings, {})
        for metric in METRICS:
            if metric.wanted(settings):
                metrics.update({f"saliency/{method}/{t}": v for t, v in metric.compute(ctx).items()})
        metrics[f"saliency/{method}/seconds"] = time.perf_counter() - t0
        faith = ctx.curves.pop("morf")  # the RISE-protocol curves, with the other metrics' results beside them
        curves[method] = {**faith, **ctx.curves}
        if return_maps:
            all_maps[method] = maps
    return SaliencyEvaluation(metrics, curves, targets, preds, all_maps)
