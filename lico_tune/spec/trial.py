"""The sections of one trial's configuration (TrialConfig: data, model, text, lico, train, eval),
each field with its default, range and, for the disputed choices, the paper's and the released
code's value. The LICO sections live in lico.py, evaluation in evaluation.py. Re-exported by
lico_tune.spec."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..data.names import DATASETS      # data/'s leaf: no torch, no registry
from ..names import BACKBONES
from .evaluation import CamMethod, EvalConfig
from .limits import MAX_EPOCHS, MAX_IMAGES, MAX_STEPS, SEED_MAX, SEED_MIN
from .lico import LicoConfig, MMConfig, OTConfig, StaticTextConfig, TemperatureForm, TextConfig
from .strict import FLOAT32_MAX, FLOAT32_TINY, StrictModel

# Learning rates above this are typos, not settings: SGD and AdamW diverge within a step (the paper
# uses 0.1; the linear-scaling rule reaches ~3 at batch 8k), so 100 leaves room for any real sweep.
MAX_LR = 100.0
# Decoupled (AdamW) or coupled (SGD) decay shrinks the weights by lr * weight_decay per step: past 10
# the weights collapse within a few steps at any usable lr (usual values: 5e-4 to 0.3).
MAX_WEIGHT_DECAY = 10.0

# ----------------------------------------------------------------------------- trial sections

DatasetName = Literal[DATASETS]


class PlacedConfig(StrictModel):
    """How placed_fmnist's canvases are generated (ignored by other datasets); cached per value."""
    canvas: int = Field(64, ge=28, le=512, description="Canvas size (px); the 28 px item is pasted at a random position.")
    clutter: int = Field(3, ge=0, le=16, description="Crops of items of other classes pasted per canvas.")
    clutter_size: int = Field(14, ge=1, le=28, description="Side of a clutter crop (px).")
    clutter_contrast: tuple[float, float] = Field((0.3, 0.8), description="Range of a clutter crop's intensity factor.")
    item_contrast: tuple[float, float] = Field((0.6, 1.0), description="Range of the item's intensity factor.")
    noise: float = Field(0.05, ge=0.0, le=1.0, description="Std of additive Gaussian noise, as a share of 255.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Generation seed: fixed per experiment, not per trial.")
    max_items: Optional[int] = Field(
        None, ge=10, description="Place only the first N items of each Fashion-MNIST split (tests, small studies).")

    @field_validator("clutter_contrast", "item_contrast")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] <= v[1] <= 1.0:
            raise ValueError(f"needs 0 <= low <= high <= 1, got {list(v)}")
        return v


class ShortcutConfig(StrictModel):
    """The shortcut probe (lico_tune/data/shortcut.py): a class-coded patch in training images."""
    fraction: float = Field(0.0, ge=0.0, le=1.0, description="Share of training images given their class's patch (0: none).")
    size: int = Field(3, ge=1, le=16, description="Side of the square patch (px).")
    region: Literal["left_half", "whole"] = Field(
        "left_half", description="Where the class slots lie: 'left_half' (a horizontal flip sends a patch "
        "where no class has a slot, so the position stays class-coded under data.augment); 'whole' (the "
        "whole image: room for larger patches; only without data.augment).")
    test: Literal["absent", "shuffled"] = Field(
        "absent", description="The reported test split: without patches, or with another class's patch.")
    probe: bool = Field(False, description="Report the probe's metrics even when fraction is 0 (a control arm).")
    value: int = Field(255, ge=0, le=255, description="Pixel value of the patch (uint8).")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Picks the patched training images and the shuffled codes (fixed per experiment).")

    @property
    def active(self) -> bool:
        """Whether it asks for anything (patches in training or the probe at test)."""
        return self.fraction > 0 or self.probe


class DataConfig(StrictModel):
    name: DatasetName = Field("fashion_mnist", description="Dataset from the registry.")
    root: Optional[str] = Field(
        None, description="Where the dataset lies (default: the dataset's usual place, "
        "e.g. /usr/share/datasets/fashion-mnist or ~/.cache/lico-tune/data/<name>).")
    download: bool = Field(False, description="Let torchvision download CIFAR/SVHN into root.")
    labels_per_class: Optional[int] = Field(
        None, ge=1, description="Limited-labels setting: N training labels per class, class-balanced, seeded.")
    train_subset: Optional[int] = Field(None, ge=1, description="Use only this many training images (seeded).")
    test_subset: Optional[int] = Field(None, ge=1, description="Evaluate on only this many test images (seeded).")
    val_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of the training split held out as a validation split "
        "(stratified, drawn with val_seed, before labels_per_class / train_subset). Trials report val/acc; "
        "searches select on val/*. 0: no validation split (searching then refuses val/* metrics).")
    val_seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX, description="Seed of the validation split: fixed per experiment, never the trial seed.")
    image_size: Optional[int] = Field(None, ge=8, description="Resize images to this size (default: native).")
    augment: bool = Field(True, description="Random crop (pad 4) and horizontal flip for training, as in the recipe.")
    class_names_file: Optional[str] = Field(
        None, description="imagefolder only: a text file of class names, one per line, in folder-sorted label order.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    placed: PlacedConfig = Field(default_factory=PlacedConfig)
    shortcut: ShortcutConfig = Field(default_factory=ShortcutConfig)

    @model_validator(mode="after")
    def _shortcut_region(self) -> "DataConfig":
        if self.augment and self.shortcut.region == "whole" and self.shortcut.active:
            raise ValueError("shortcut.region 'whole' needs data.augment: false (a flip would move a patch onto "
                             "another class's slot); use region left_half or turn augmentation off")
        return self


Backbone = Literal[BACKBONES]


class ModelConfig(StrictModel):
    backbone: Backbone = Field("wrn28_2", description="Image backbone; its last block's feature map is F.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout before the linear classifier.")


class TrainConfig(StrictModel):
    epochs: int = Field(200, ge=1, le=MAX_EPOCHS, description="Epochs (the released code's recipe: 200; at most 10^5, a typo guard).")
    batch_size: int = Field(128, ge=1, le=MAX_IMAGES, description="Images per step (at most 10^6).")
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0.0, le=MAX_LR, description="Learning rate (released HEAD: 0.1 with cosine decay; the paper's text says "
                      "0.03; at most 100: above, SGD and AdamW diverge).")
    text_lr: Optional[float] = Field(None, gt=0.0, le=MAX_LR,
                                     description="Learning rate of the prompt learner (default: lr; at most 100).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="CE with label smoothing (torch's cross_entropy(label_smoothing=)). 0: "
        "off (paper and released code). A control of this project: a generic regulariser without language, "
        "against which a gain from the text side must be told apart.")
    nesterov: bool = Field(False, description="Nesterov momentum. Released code: plain momentum (false); "
                           "the paper does not say.")
    weight_decay: float = Field(5e-4, ge=0.0, le=MAX_WEIGHT_DECAY,
                                description="Weight decay (at most 10: above, the weights collapse in a few steps).")
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    ema: Optional[float] = Field(0.999, gt=0.0, lt=1.0, description="EMA decay of weights for evaluation; null "
                                 "disables (released HEAD: 0.999, used only with its --use-ema flag, off by default).")
    seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX, description="Trial seed (model, data subsets): a signed 64-bit "
                      "integer, what torch's seeding and the results tables hold; repeat i trains with seed + i.")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Autocast precision (CUDA).")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
                        description="'auto' (CUDA when available), 'cpu' or 'cuda[:N]'.")
    steps_per_epoch: Optional[int] = Field(None, ge=1, le=MAX_STEPS,
                                           description="Cap on optimiser steps per epoch (smoke tests; at most 10^7).")
    log_every: int = Field(50, ge=1, description="Progress line every this many steps.")
    threads: Optional[int] = Field(
        None, ge=1, description="torch CPU threads (default: 1 when deterministic, else torch's choice); recorded.")
    deterministic: Optional[bool] = Field(
        None, description="Bit-identical reruns: fixed threads, torch.use_deterministic_algorithms, cuDNN "
        "deterministic (default: on for CPU trials, off on CUDA). See lico_tune/compute.py.")
    fail_at_step: Optional[int] = Field(
        None, ge=0, le=MAX_STEPS, description="Testing aid: make the loss NaN at this global step (at most 10^7).")


class TrialConfig(StrictModel):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    lico: LicoConfig = Field(default_factory=LicoConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


__all__ = ["CamMethod", "DataConfig", "DatasetName", "EvalConfig", "FLOAT32_MAX", "FLOAT32_TINY", "LicoConfig",
           "MMConfig", "ModelConfig", "OTConfig", "PlacedConfig", "ShortcutConfig", "StaticTextConfig", "StrictModel", "TemperatureForm",
           "TextConfig", "TrainConfig", "TrialConfig"]
