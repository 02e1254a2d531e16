"""Searched fields that cannot change training (lico_tune/plan/inert.py): each rule holds where the
model cannot read the field and not beside it; the plan refuses a field inert in every cell (unless
search.allow_inert), names the arms where it is inert in some, and judges sampled conditions at
every value the search can draw. The fixed-plan and no-gradient rules are checked against losses.py."""
import copy

import pytest
import torch

from lico_tune.cli import main
from lico_tune.errors import SpecError
from lico_tune.losses import ot_solve
from lico_tune.plan import plan_search
from lico_tune.plan.cells import inert_arms
from lico_tune.plan.inert import RULES, why_inert
from lico_tune.spec import TrialConfig, set_path, validate_spec

EOT = {"text": {"features": "eot"}}


def cfg(**paths) -> TrialConfig:
    tree = TrialConfig().model_dump(mode="json")
    for path, value in paths.items():
        set_path(tree, path.replace("__", "."), value)
    return TrialConfig.model_validate(tree)


def spec(space: dict, base: dict | None = None, ablation: dict | None = None, **search) -> dict:
    tree = {"name": "inert", "base": copy.deepcopy(base or {}), "search": {"space": space, **search}}
    tree["base"].setdefault("data", {"val_fraction": 0.1})
    if ablation:
        tree["ablation"] = ablation
    return tree


def plan_of(tree: dict, tmp_path, **kw):
    return plan_search(validate_spec(tree), storage=str(tmp_path), **kw)


# ----------------------------------------------------------------------------- one rule at a time

# (field, a config in which it cannot act, the nearest config in which it can, words of the reason)
CASES = [
    ("text.n_ctx", dict(lico__alpha=0, lico__beta=0), dict(lico__alpha=0), "LICO is off"),
    ("train.text_lr", dict(lico__alpha=0, lico__beta=0), dict(), "LICO is off"),
    ("lico.ot.epsilon", dict(lico__beta=0), dict(), "lico.beta is 0"),
    ("lico.ot.spread_weight", dict(lico__beta=0), dict(), "lico.beta is 0"),
    ("lico.ot.epsilon", dict(lico__ot__gradient="none"), dict(), "no_grad"),
    ("lico.ot.target", dict(lico__ot__gradient="none"), dict(), "no_grad"),
    ("lico.beta", dict(lico__ot__gradient="none"), dict(), "no_grad"),
    ("lico.ot.epsilon", dict(text__features="eot"), dict(text__features="eot", lico__ot__target="all_classes"),
     "one text point per class"),
    ("lico.ot.max_iter", dict(text__features="rolled", text__n_ctx=1), dict(text__features="per_token", text__n_ctx=1),
     "one text point per class"),
    ("lico.mm.temperature", dict(lico__alpha=0), dict(), "lico.alpha is 0"),
    ("text.pooled", dict(lico__alpha=0), dict(), "lico.alpha is 0"),
    ("lico.mm.temperature_max", dict(lico__mm__temperature_form="fixed"), dict(lico__mm__temperature_form="exp"),
     "'fixed'"),
    ("lico.mm.reference_temperature", dict(), None, "health"),
    ("text.proj_dropout", dict(lico__ot__anchors="frozen"), dict(), "no projection"),
    ("text.pooled", dict(text__features="eot"), dict(text__features="per_token"), "first point and the mean"),
    ("text.context_copies", dict(text__features="per_token"), dict(), "only with features 'rolled'"),
    ("text.pretrained", dict(), dict(text__encoder="open_clip", text__model="ViT-B-32"), "only the open_clip"),
    ("text.n_ctx", dict(text__ctx_init="a photo of a"), dict(), "taken from the phrase"),
    ("text.model", dict(text__encoder="static"), dict(), "fixed class vectors"),
    ("text.class_token_position", dict(text__encoder="static"), dict(), "fixed class vectors"),
    ("text.static.seed", dict(), dict(text__encoder="static"), "only the static encoder"),
    ("text.class_names_seed", dict(), dict(text__class_names="deranged"), "read only with 'deranged'"),
    ("text.finetune", dict(lico__alpha=0, lico__ot__anchors="frozen"), dict(lico__ot__anchors="frozen"),
     "read once"),
    ("train.text_lr", dict(lico__mm__text_gradient=False, lico__mm__temperature_form="fixed", lico__ot__gradient="none"),
     dict(lico__mm__text_gradient=False, lico__mm__temperature_form="fixed"), "learning rate moves nothing"),
]


@pytest.mark.parametrize("path, inert, active, words", CASES, ids=[f"{c[0]}-{c[3][:18]}" for c in CASES])
def test_each_rule_holds_where_the_field_cannot_act_and_not_beside_it(path, inert, active, words):
    reason = why_inert(cfg(**inert), path)
    assert reason and words in reason
    if active is not None:
        assert why_inert(cfg(**active), path) is None


def test_every_rule_is_exercised_and_acting_fields_are_never_inert():
    exercised = set()
    for path, inert, _, _ in CASES:
        c = cfg(**inert)
        exercised |= {rule.__name__ for covered, rule in RULES if path in covered and rule(c)}
    assert exercised == {rule.__name__ for _, rule in RULES}
    # The fields that shape the objective in the default (paper) config are never called inert.
    default = TrialConfig()
    for path in ("lico.alpha", "lico.beta", "lico.ot.epsilon", "lico.ot.points", "lico.mm.temperature", "text.n_ctx",
                 "text.features", "train.text_lr", "text.proj_hidden", "train.lr", "data.name"):
        assert why_inert(default, path) is None, path


def test_one_text_point_fixes_the_plan_and_gradient_none_sends_nothing_in_losses_py():
    """What fixed_plan and ot_without_gradient claim, on the real solver: with M = 1 text point the
    loss and its gradient do not move with epsilon, max_iter or tol; with M = 3 they do."""
    torch.manual_seed(0)
    img = torch.randn(4, 16, 9)

    def run(text, **kw):
        x = img.clone().requires_grad_(True)
        loss, _ = ot_solve(x, text, solver="native", gradient=kw.pop("gradient", "envelope"), **kw)
        if x.requires_grad and loss.requires_grad:
            loss.backward()
        return loss.detach(), x.grad

    one = torch.randn(4, 1, 9)
    a = run(one, epsilon=0.01, max_iter=50, tol=1e-9)
    b = run(one, epsilon=1.0, max_iter=3, tol=1e-2)
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-6)
    three = torch.randn(4, 3, 9)
    c, d = run(three, epsilon=0.01, max_iter=50, tol=1e-9), run(three, epsilon=1.0, max_iter=50, tol=1e-9)
    assert not torch.allclose(c[0], d[0], atol=1e-4)
    none_loss, none_grad = run(three, epsilon=0.01, max_iter=50, tol=1e-9, gradient="none")
    assert none_grad is None and torch.allclose(none_loss, c[0])


# ----------------------------------------------------------------------------- the plan

def test_the_measured_case_epsilon_with_eot_is_refused_with_the_reason(tmp_path):
    tree = spec({"lico.ot.epsilon": {"loguniform": [0.001, 0.7]}, "lico.ot.max_iter": {"choice": [50, 100]}},
                base=EOT, algorithm="optuna", num_samples=6)
    with pytest.raises(SpecError) as exc:
        plan_of(tree, tmp_path)
    msg = str(exc.value)
    assert msg.startswith("search.space.lico.ot.epsilon cannot change training in any trial")
    assert "text.features 'eot' gives one text point per class" in msg and "search.allow_inert" in msg
    assert "\n" not in msg
    tree["search"]["allow_inert"] = ["lico.ot.epsilon", "lico.ot.max_iter"]
    plan = plan_of(tree, tmp_path)                     # on purpose: accepted, and said
    assert [n.split(" cannot act")[0] for n in plan.notes] == ["lico.ot.epsilon", "lico.ot.max_iter"]
    tree["base"]["lico"] = {"ot": {"target": "all_classes"}}     # K points: the plan depends on epsilon
    tree["search"].pop("allow_inert")
    assert plan_of(tree, tmp_path).notes == []


def test_allow_inert_names_only_searched_fields(tmp_path):
    tree = spec({"lico.alpha": {"grid": [1.0, 10.0]}}, allow_inert=["lico.ot.epsilon"])
    with pytest.raises(SpecError, match="search.allow_inert names 'lico.ot.epsilon', which search.space does not"):
        plan_of(tree, tmp_path)


def test_a_ce_arm_is_named_not_refused_and_left_out_on_the_dashboard(tmp_path, capsys):
    tree = spec({"lico.ot.epsilon": {"loguniform": [0.01, 1.0]}, "train.seed": {"grid": [0, 1]}},
                ablation={"ce": {"lico.alpha": 0, "lico.beta": 0}, "lico": {}, "mm_only": {"lico.beta": 0}},
                algorithm="random")
    plan = plan_of(tree, tmp_path)
    assert plan.inert["lico.ot.epsilon"].arms == ["ce", "mm_only"] and "train.seed" not in plan.inert
    (note,) = plan.notes
    assert note.startswith("lico.ot.epsilon cannot act in arms ce, mm_only: lico.alpha and lico.beta are 0")
    assert "(in arm ce); lico.beta is 0: the OT term (and its spread penalty) is not computed (in arm mm_only)" in note
    assert note.endswith("; the dashboard leaves arms ce, mm_only out of its plot and importance")
    assert inert_arms(validate_spec(tree).model_dump(mode="json")) == {"lico.ot.epsilon": ["ce", "mm_only"]}
    assert inert_arms({"name": "old", "base": {"no_such_section": 1}}) == {}      # an unreadable spec: none
    # `lico-tune validate` says so and succeeds.
    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert main(["validate", str(path)]) == 0
    assert "note: lico.ot.epsilon cannot act in arms ce, mm_only" in capsys.readouterr().out


def test_validate_refuses_the_measured_case_with_exit_2(tmp_path, capsys):
    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec({"lico.ot.epsilon": {"loguniform": [0.001, 0.7]}}, base=EOT,
                                        algorithm="optuna")))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lico.ot.epsilon cannot change training" in err and "Traceback" not in err


@pytest.mark.parametrize("beta, inert", [({"uniform": [0.0, 1.0]}, False), ({"uniform": [0.5, 2.0]}, True)])
def test_a_sampled_condition_is_judged_at_every_value_it_can_take(tmp_path, beta, inert):
    """beta is inert under a gradient-free OT only while it stays above 0 (at 0 no OT is built)."""
    tree = spec({"lico.beta": beta, "lico.alpha": {"uniform": [1.0, 2.0]}}, base={"lico": {"ot": {"gradient": "none"}}},
                algorithm="random", allow_inert=["lico.beta"] if inert else [])
    assert ("lico.beta" in plan_of(tree, tmp_path).inert) == inert


def test_a_searched_condition_keeps_its_dependents_active(tmp_path):
    """epsilon with eot is active once the search can switch the target to all classes (a choice), or
    once a grid axis does in some cells (then the other cells are named)."""
    sampled = spec({"lico.ot.epsilon": {"loguniform": [0.01, 1.0]},
                    "lico.ot.target": {"choice": ["own_class", "all_classes"]}}, base=EOT, algorithm="random")
    assert plan_of(sampled, tmp_path).inert == {}
    grid = spec({"lico.ot.epsilon": {"loguniform": [0.01, 1.0]}, "lico.ot.target": {"grid": ["own_class", "all_classes"]}},
                base=EOT, algorithm="random")
    (note,) = plan_of(grid, tmp_path).notes
    assert note.startswith("lico.ot.epsilon cannot act in cells lico.ot.target=own_class:")


def test_resume_never_refuses_an_experiment_that_ran(tmp_path):
    tree = spec({"lico.ot.epsilon": {"loguniform": [0.001, 0.7]}}, base=EOT, algorithm="optuna")
    plan = plan_search(validate_spec(tree), name="x", storage=str(tmp_path), new=False)
    assert plan.inert == {} and plan.notes == []
