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
from typing import Sequence

import torch
from torch import Tensor, nn

from ._util import SaliencyFn, as_targets, predict
from .equivariance import salience_equivariance
from .faithfulness import insertion_deletion
from .localisation import energy_masks, grid_localisation, pointing_game_masks
from .methods import make_saliency_fn
from .mprt import efficient_mprt, smooth_mprt
from .road import PERCENTILES, road as road_scores
from .sanity import cascading_randomisation


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


def evaluate_saliency(model: nn.Module, images: Tensor, labels, methods: Sequence[str] = ("gradcam",), *,
                      target_layer: nn.Module | str | None = None, target: str = "label",
                      batch_size: int = 256, pixels_per_step: int | None = None,
                      blur_sigma: float = 5.0, blur_kernel_size: int | None = None,
                      insertion_substrate: str = "blur", deletion_substrate: str = "zeros",
                      n_grids: int | None = None, grid_seed: int = 0, ses: bool = True,
                      ses_seed: int = 0, ses_scale=(0.5, 1.0), ses_flip_p: float = 0.5,
                      masks: Tensor | None = None, sanity: bool = False,
                      sanity_max_layers: int | None = None, rise_n_masks: int = 250,
                      rise_cells: int = 8, rise_p: float = 0.5, rise_seed: int = 0,
                      return_maps: bool = False, grid: bool | None = None,
                      orderings: Sequence[str] = ("morf",), road: bool = False,
                      road_percentiles: Sequence[float] = PERCENTILES, road_noise: float = 0.01,
                      mprt: Sequence[str] = (), mprt_samples: int = 8,
                      mprt_noise: float = 0.1, precision: str = "fp32") -> SaliencyEvaluation:
    """All saliency metrics for images (N, C, H, W) (normalised), labels (N,).

    target: "label" explains the ground-truth class, "pred" the prediction on the clean image
    (faithfulness, SES, masks, sanity). The grid game always targets each tile's true class;
    it is skipped when the images hold fewer than 4 classes; n_grids defaults to N // 4 (>= 1);
    grid=None plays it only when no masks are given (real boxes replace it). orderings: "morf"
    (always computed: the RISE protocol) and/or "lerf". mprt: "smooth" and/or "efficient".
    batch_size bounds the images per forward everywhere; precision ('fp32', 'bf16', 'fp16') is the
    autocast of the insertion/deletion forwards (eval.precision). The model's mode, requires_grad flags
    and .grad are left as they were.
    """
    if target not in ("label", "pred"):
        raise ValueError(f"target must be 'label' or 'pred', got '{target}'")
    bad = (set(orderings) - {"morf", "lerf"}) | {f"mprt:{m}" for m in set(mprt) - {"smooth", "efficient"}}
    if bad:
        raise ValueError(f"unknown orderings/mprt {sorted(bad)}; orderings: morf, lerf; mprt: smooth, efficient")
    grid = masks is None if grid is None else grid
    labels = as_targets(labels, len(images))
    preds = predict(model, images, batch_size)
    targets = labels if target == "label" else preds
    opts = dict(target_layer=target_layer, batch_size=batch_size, rise_n_masks=rise_n_masks,
                rise_cells=rise_cells, rise_p=rise_p, rise_seed=rise_seed)
    n_classes = len(torch.unique(labels))
    metrics: dict[str, float] = {}
    curves: dict[str, dict] = {}
    all_maps: dict[str, Tensor] = {}
    if masks is not None:
        metrics["eval/mask_area"] = masks.flatten(1).float().mean().item()
    for method in methods:
        t0 = time.perf_counter()
        key = f"saliency/{method}"
        fn = make_saliency_fn(model, method, **opts)
        maps = compute_maps(fn, images, targets, batch_size)  # (N, H, W)
        faith = insertion_deletion(model, images, maps, targets, pixels_per_step, batch_size,
                                   blur_sigma, blur_kernel_size, insertion_substrate=insertion_substrate,
                                   deletion_substrate=deletion_substrate, precision=precision)
        for m in ("insertion", "deletion", "overall"):
            metrics[f"{key}/{m}"] = faith[m].mean().item()
        if "lerf" in orderings:
            lerf = insertion_deletion(model, images, maps, targets, pixels_per_step, batch_size, blur_sigma,
                                      blur_kernel_size, insertion_substrate=insertion_substrate,
                                      deletion_substrate=deletion_substrate, order="lerf", precision=precision)
            faith["lerf"] = lerf
            metrics[f"{key}/insertion_lerf"] = lerf["insertion"].mean().item()
            metrics[f"{key}/deletion_lerf"] = lerf["deletion"].mean().item()
            metrics[f"{key}/lerf_morf"] = (lerf["deletion"] - faith["deletion"]).mean().item()
        if road:
            r = road_scores(model, images, maps, targets, road_percentiles, batch_size, road_noise)
            faith["road"] = r
            metrics[f"{key}/road_morf"] = r["morf"].mean().item()
            metrics[f"{key}/road_lerf"] = r["lerf"].mean().item()
            metrics[f"{key}/road_combined"] = r["combined"].mean().item()
        if grid and n_classes >= 4:
            loc = grid_localisation(fn, images, labels, n_grids or max(1, len(images) // 4), grid_seed,
                                    batch_size)
            metrics[f"{key}/pointing"] = loc["pointing"].mean().item()
            metrics[f"{key}/energy"] = loc["energy"].mean().item()
        if masks is not None:
            metrics[f"{key}/pointing_mask"] = pointing_game_masks(maps, masks).mean().item()
            metrics[f"{key}/energy_mask"] = energy_masks(maps, masks).mean().item()
        if ses:
            faith["ses"] = salience_equivariance(fn, images, targets, ses_seed, ses_scale,
                                                 flip_p=ses_flip_p, batch_size=batch_size, maps=maps)
            metrics[f"{key}/ses"] = faith["ses"].mean().item()
        if sanity:
            rand = cascading_randomisation(model, images, targets, method, max_layers=sanity_max_layers,
                                           **opts)
            faith["sanity"] = rand
            metrics[f"{key}/sanity_top"] = rand["mean"][min(1, len(rand["mean"]) - 1)].item()
            metrics[f"{key}/sanity_full"] = rand["mean"][-1].item()
        if "smooth" in mprt:
            sm = smooth_mprt(model, images, targets, method, mprt_samples, mprt_noise, sanity_max_layers, **opts)
            faith["smprt"] = sm
            metrics[f"{key}/smprt_top"] = sm["mean"][min(1, len(sm["mean"]) - 1)].item()
            metrics[f"{key}/smprt_full"] = sm["mean"][-1].item()
        if "efficient" in mprt:
            em = efficient_mprt(model, images, targets, method, **opts)
            faith["emprt"] = em
            metrics[f"{key}/emprt"] = em["ratio"].mean().item()
        metrics[f"{key}/seconds"] = time.perf_counter() - t0
        curves[method] = faith
        if return_maps:
            all_maps[method] = maps
    return SaliencyEvaluation(metrics, curves, targets, preds, all_maps)
