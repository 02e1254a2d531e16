"""Fidelity v2 (issue 20): every LICO default is the paper's value or, where the paper is silent,
the released HEAD's, and the released-code arms resolve to what that code did, field by field.

The tables cite their source. HEAD = ymLeiFDU/LICO at 12fee2a (Oct 2024): main.py (argparse
defaults, `optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=5e-4)`), models/
wideresnet_prompt.py (`emb_temp = log(1/0.07)` used as the softmax divisor of +distance, the MLP
with Dropout(0.5), `w_distance` under torch.no_grad, own-class copies `[:, targets]`), models/
text_encoder.py (`torch.roll(ctx, shifts=1)` for every copy: identical untied copies; the CLIP
tower without no_grad and in the optimizer: fine-tuned), utils/label_mapping.py (pdists: Euclidean,
sqrt). JAN = the same repository at fabb62c (Jan 2024): class-specific context, class token in the
middle, the context shuffled every forward, one feature per class, every image transported to all K
class features (`expand`), OT under no_grad; it has no main.py (its optimiser is unknown).
"""
from pathlib import Path

import pytest

from lico_tune.spec import TrialConfig, get_path, load_spec, set_path, validate_trial

ROOT = Path(__file__).resolve().parents[2]

# field -> (default, where it comes from)
DEFAULTS = {
    "lico.alpha": (10.0, "paper; HEAD --alpha 10"),
    "lico.beta": (1.0, "paper; HEAD --beta 1"),
    "lico.mm.sign": ("negative", "paper: softmax(-D/tau)"),
    "lico.mm.distance": ("euclidean", "paper: Euclidean distance; HEAD pdists(squared=False)"),
    "lico.mm.temperature_form": ("divisor", "paper: learnable, form not given -> HEAD emb_temp used as is"),
    "lico.mm.temperature": (2.659, "paper: not given -> HEAD log(1/0.07)"),
    "lico.mm.temperature_min": (None, "paper and HEAD: unbounded"),
    "lico.mm.temperature_max": (None, "paper and HEAD: unbounded"),
    "lico.mm.target_temperature": (None, "paper and HEAD: one tau for both sides"),
    "lico.mm.temperature_weight_decay": (5e-4, "paper: not given -> HEAD SGD weight_decay=5e-4 on all"),
    "lico.mm.text_gradient": (True, "paper and HEAD: A^G not detached"),
    "lico.ot.epsilon": (0.1, "paper; HEAD SinkhornDistance(eps=0.1)"),
    "lico.ot.max_iter": (100, "HEAD --max-iter-ot 100"),
    "lico.ot.gradient": ("envelope", "paper: OT trains the model"),
    "lico.ot.target": ("own_class", "paper 3.3; HEAD [:, targets]"),
    "lico.ot.points": ("channels", "HEAD feature_maps (B, C, H*W)"),
    "lico.ot.anchors": ("learned", "paper and HEAD: h(text) trained"),
    "lico.ot.spread_weight": (0.0, "no penalty in paper or code"),
    "text.n_ctx": (12, "paper; HEAD n_ctx = 12"),
    "text.features": ("rolled", "paper: M rolled copies"),
    "text.context_copies": ("rolled", "paper / authors' 2024 response: cyclic rolls"),
    "text.pooled": (None, "resolves to 'first' for rolled: HEAD text_features[targets] = copy 0"),
    "text.class_specific": (False, "paper and HEAD: shared context"),
    "text.class_token_position": ("end", "HEAD class_token_position = 'end'"),
    "text.shuffle_ctx": (False, "paper and HEAD: not shuffled"),
    "text.finetune": (False, "paper: frozen text encoder"),
    "text.proj_hidden": (512, "paper: not given -> HEAD Linear(512, 512)"),
    "text.proj_dropout": (0.5, "paper: not given -> HEAD Dropout(0.5)"),
    "train.lr": (0.1, "HEAD --lr 0.1 (the paper's text says 0.03; the recipe follows the code)"),
    "train.batch_size": (128, "HEAD --batch-size 128"),
    "train.momentum": (0.9, "HEAD SGD momentum 0.9"),
    "train.weight_decay": (5e-4, "HEAD SGD weight_decay 5e-4"),
    "train.nesterov": (False, "HEAD plain momentum"),
    "train.schedule": ("cosine", "HEAD CosineAnnealingLR"),
    "train.epochs": (200, "HEAD --epochs 200"),
}

# The released HEAD's LICO as an arm: every field where it differs from the defaults, and those it shares.
HEAD = {
    "lico.alpha": 10.0, "lico.beta": 1.0,
    "lico.mm.sign": "positive", "lico.mm.distance": "euclidean", "lico.mm.temperature_form": "divisor",
    "lico.mm.temperature": 2.659, "lico.mm.temperature_min": None, "lico.mm.temperature_max": None,
    "lico.mm.target_temperature": None, "lico.mm.temperature_weight_decay": 5e-4, "lico.mm.text_gradient": True,
    "lico.ot.gradient": "none", "lico.ot.target": "own_class", "lico.ot.points": "channels",
    "lico.ot.epsilon": 0.1, "lico.ot.anchors": "learned", "lico.ot.spread_weight": 0.0,
    "text.features": "rolled", "text.context_copies": "untied", "text.class_specific": False,
    "text.class_token_position": "end", "text.shuffle_ctx": False, "text.finetune": True,
    "text.proj_hidden": 512, "text.proj_dropout": 0.5,
}
HEAD_RESOLVED = {"pooling": "first"}  # MM reads copy 0

JAN = {**{k: v for k, v in HEAD.items() if k != "text.context_copies"},  # one feature per class: no copies
       "text.class_specific": True, "text.class_token_position": "middle", "text.shuffle_ctx": True,
       "text.features": "eot", "lico.ot.target": "all_classes"}


def _arm(spec_path: str, arm: str) -> TrialConfig:
    spec = load_spec(ROOT / spec_path)
    tree = spec.base.model_dump()
    for path, value in spec.ablation[arm].items():
        set_path(tree, path, value)
    return validate_trial(tree)


def _check(cfg: TrialConfig, table: dict) -> None:
    tree = cfg.model_dump()
    wrong = {path: (get_path(tree, path), want) for path, want in table.items()
             if get_path(tree, path) != pytest.approx(want)}
    assert not wrong, f"(got, want): {wrong}"


def test_each_default_is_the_paper_or_the_released_head():
    cfg = TrialConfig()
    _check(cfg, {path: value for path, (value, _) in DEFAULTS.items()})
    assert cfg.text.pooling == "first"


def test_field_descriptions_name_their_source():
    """Each disputed field's description names the paper or the released code (no 'faithful')."""
    from lico_tune.spec import LicoConfig, MMConfig, OTConfig, TextConfig
    for model, fields in ((MMConfig, ["sign", "temperature_form", "temperature", "target_temperature",
                                      "temperature_weight_decay", "text_gradient"]),
                          (OTConfig, ["points", "gradient", "target", "anchors", "spread_weight"]),
                          (TextConfig, ["context_copies", "pooled", "finetune", "proj_dropout", "shuffle_ctx"]),
                          (LicoConfig, ["alpha", "beta"])):
        for name in fields:
            text = model.model_fields[name].description
            assert ("paper" in text or "HEAD" in text) and "faithful" not in text, (model.__name__, name)
    assert "January 2024" in OTConfig.model_fields["target"].description


@pytest.mark.parametrize("spec,arm", [("search_spaces/study_converged.yaml", "lico_released"),
                                      ("search_spaces/study_converged_placed.yaml", "lico_released"),
                                      ("search_spaces/reproduction.yaml", "released_code")])
def test_released_arm_resolves_to_the_head(spec, arm):
    cfg = _arm(spec, arm)
    _check(cfg, HEAD)
    assert cfg.text.pooling == HEAD_RESOLVED["pooling"]


def test_january_2024_arm_resolves_to_that_code():
    cfg = _arm("search_spaces/reproduction.yaml", "released_jan2024")
    _check(cfg, JAN)


def test_per_token_default_pooling_is_the_mean_and_first_is_explicit():
    assert validate_trial({"text": {"features": "per_token"}}).text.pooling == "mean"
    assert validate_trial({"text": {"features": "per_token", "pooled": "first"}}).text.pooling == "first"
    assert validate_trial({"text": {"features": "rolled", "pooled": "mean"}}).text.pooling == "mean"


def test_stabilised_option_is_named_and_not_default():
    """The project's stabilised MM temperature stays available, with its reason, under its own name."""
    from lico_tune.spec import MMConfig
    desc = MMConfig.model_fields["target_temperature"].description
    assert "stabilised" in desc and "not in the paper or any code" in desc
    cfg = _arm("search_spaces/study_converged.yaml", "mm_stabilised")
    assert (cfg.lico.mm.temperature_form, cfg.lico.mm.temperature, cfg.lico.mm.target_temperature,
            cfg.lico.mm.text_gradient) == ("exp", 0.3, 0.3, False)


def test_converged_study_specs_share_their_base():
    """One base for both parts of the converged study: only the dataset and its budget differ."""
    fm = load_spec(ROOT / "search_spaces/study_converged.yaml").base.model_dump()
    pl = load_spec(ROOT / "search_spaces/study_converged_placed.yaml").base.model_dump()
    assert fm["data"].pop("name") == "fashion_mnist" and pl["data"].pop("name") == "placed_fmnist"
    assert (fm["train"].pop("epochs"), pl["train"].pop("epochs")) == (3, 5)
    assert fm == pl


def test_configs_saved_before_text_pooled_keep_reading_the_mean():
    """A saved config holds every field of the version that wrote it: one without text.pooled comes
    from before fidelity v2, when MM read the mean of a class's points, and reruns and resumes that
    way (measured: a rolled trial of the 32-step study trains to other bits with 'first')."""
    from lico_tune.spec import saved_trial
    old = TrialConfig().model_dump(mode="json")
    del old["text"]["pooled"]
    assert validate_trial(saved_trial(old)).text.pooling == "mean"
    new = TrialConfig().model_dump(mode="json")
    assert validate_trial(saved_trial(new)).text.pooling == "first" and saved_trial(new) == new
    assert "pooled" not in old["text"]  # the caller's tree is not changed
