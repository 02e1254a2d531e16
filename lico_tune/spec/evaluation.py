"""What a trial evaluates at its end (EvalConfig): saliency methods, faithfulness protocols, sanity
checks, localisation."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from ..names import SALIENCY_METHODS
from .limits import MAX_IMAGES, SEED_MAX, SEED_MIN
from .strict import StrictModel


CamMethod = Literal[SALIENCY_METHODS]


class EvalConfig(StrictModel):
    cams: list[CamMethod] = Field(default_factory=lambda: ["gradcam"],
                                  description="Saliency methods evaluated at the end of the trial.")
    n_images: int = Field(200, ge=0, le=MAX_IMAGES, description="Test images used for saliency metrics (0: none; at most "
                          "10^6, beyond any test split here).")
    seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX, description="Picks the saliency test images; the same for every trial.")
    batch_size: int = Field(256, ge=1, le=MAX_IMAGES, description="Images per forward pass in evaluation (bounds memory).")
    every: int = Field(1, ge=1, description="Evaluate accuracy every this many epochs (and at the end).")
    model: Literal["ema", "raw"] = Field("ema", description="Explain the EMA weights (when train.ema is on) or the raw ones.")
    target: Literal["label", "pred"] = Field("label", description="Explain the ground-truth class or the prediction.")
    pixels_per_step: Optional[int] = Field(
        None, ge=1, description="Insertion/deletion step (default: 10 up to 64 px, 8 rows above, e.g. 224*8).")
    blur_sigma: float = Field(5.0, gt=0.0, description="Gaussian blur of the insertion substrate.")
    n_grids: Optional[int] = Field(None, ge=1, description="2x2 grids for the pointing game (default n_images // 4).")
    ses: bool = Field(True, description="Salience equivariance score under random resized crop + flip.")
    sanity: bool = Field(False, description="Cascading randomisation sanity check (slow: maps per layer).")
    sanity_max_layers: Optional[int] = Field(None, ge=1)
    rise_n_masks: int = Field(250, ge=1, le=MAX_IMAGES, description="RISE masks (250 at 32 px in a LICO reproduction).")
    val_saliency: bool = Field(False, description="Also explain eval.n_images fixed validation images "
                               "(needs data.val_fraction > 0): val/saliency/<method>/<metric>, to search on.")
    gallery_images: int = Field(8, ge=0, le=MAX_IMAGES, description="Fixed test images drawn as PNG overlays per trial.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Autocast of the insertion/deletion forwards (the maps stay fp32).")
    orderings: list[Literal["morf", "lerf"]] = Field(
        default_factory=lambda: ["morf"], description="Pixel orders of insertion/deletion: most relevant first "
        "(always, the RISE protocol) and/or least relevant first ('lerf': *_lerf metrics and lerf_morf).")
    road: bool = Field(False, description="ROAD (noisy linear imputation, MoRF and LeRF) at road_percentiles.")
    road_percentiles: list[float] = Field(
        default_factory=lambda: [10, 20, 30, 40, 50, 60, 70, 80, 90],
        description="ROAD percentiles (pytorch-grad-cam's convention: MoRF keeps pixels below the p-th percentile).")
    road_noise: float = Field(0.01, ge=0.0, description="Std of the noise added to ROAD's imputed pixels.")
    mprt: list[Literal["smooth", "efficient"]] = Field(
        default_factory=list, description="Extra parameter-randomisation checks: smooth MPRT (noise-averaged maps, "
        "cascading) and/or efficient MPRT (entropy ratio after randomising every layer).")
    mprt_samples: int = Field(8, ge=1, description="Noisy copies per image for smooth MPRT.")
    mprt_noise: float = Field(0.1, ge=0.0, description="Smooth MPRT noise std, as a share of each image's value range.")
    boxes: bool = Field(True, description="Pointing game and energy on the dataset's boxes when it has them "
                        "(placed_fmnist); the 2x2 grid game otherwise.")

    @field_validator("road_percentiles")
    @classmethod
    def _percentiles(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < p < 100 for p in v):
            raise ValueError(f"needs one or more percentiles strictly between 0 and 100, got {v}")
        return v
