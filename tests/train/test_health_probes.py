"""The health probes and the anti-collapse options against hand computations (issue 20): the gradient
fractions and doses on a toy model with known gradients, the between-class cosine, the spread
penalty, the frozen anchors, and the text features computed once where nothing can change them."""
import math

import pytest
import torch

from lico_tune.train.health import between_class_cos, fractions_and_doses, gradient_norms
from lico_tune.train.health_rules import COLLAPSE_COS, ot_collapse_warning
from lico_tune.losses import spread_penalty
from lico_tune.models.lico import random_orthogonal


def test_gradient_fractions_and_doses_by_hand():
    """Two terms linear in the feature map, so their gradients are known: CE = <a, F>, MM = <b, F>
    with a = 3 e1 and b = 4 e2 (orthogonal). |g_ce| = 3, |g_mm| = 4: squared-norm fractions 9/25 and
    16/25, dose 4/3; a ratio of norms would have said 3/7 and 4/7."""
    fmap = torch.ones(1, 2, 1, 2, requires_grad=True)  # (B, C, H, W), 4 entries
    a = torch.zeros(1, 2, 1, 2)
    a[0, 0, 0, 0] = 3.0
    b = torch.zeros(1, 2, 1, 2)
    b[0, 1, 0, 1] = 4.0
    norms = gradient_norms([(a * fmap).sum(), (b * fmap).sum(), None], fmap)
    assert norms.tolist() == pytest.approx([3.0, 4.0, 0.0])
    frac, dose = fractions_and_doses(norms)
    assert frac.tolist() == pytest.approx([9 / 25, 16 / 25, 0.0])
    assert dose.tolist() == pytest.approx([4 / 3, 0.0])
    # entries of F that are 0 (a ReLU's dead units) pass nothing to the backbone: they do not count
    dead = torch.ones(1, 2, 1, 2)
    dead[0, 1, 0, 1] = 0.0
    dead.requires_grad_(True)
    assert gradient_norms([(b * dead).sum()], dead).tolist() == pytest.approx([0.0])


def test_between_class_cosine_by_hand():
    # class 0: e1, e2; class 1: e1, -e2 -> between pairs (e1,e1)=1, (e1,-e2)=0, (e2,e1)=0, (e2,-e2)=-1
    pts = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, -1.0]]])
    assert between_class_cos(pts) == pytest.approx(0.0)
    same = torch.ones(3, 2, 4)
    assert between_class_cos(same) == pytest.approx(1.0)
    assert math.isnan(between_class_cos(torch.ones(1, 3, 4)))
    assert ot_collapse_warning(float("nan"), None, None) is None  # one class: no verdict
    warning = ot_collapse_warning(0.992, 0.61, 0.99)
    assert warning.kind == "OT collapsed" and "0.610 before training" in warning.detail
    assert ot_collapse_warning(COLLAPSE_COS - 1e-3, 0.61, 0.99) is None


def test_spread_penalty_by_hand():
    orthogonal = torch.eye(4).reshape(2, 2, 4)  # 4 orthonormal points in 2 classes
    assert spread_penalty(orthogonal).item() == pytest.approx(0.0)
    assert spread_penalty(torch.ones(2, 3, 5)).item() == pytest.approx(1.0)  # all coincide
    # three points: cosines (1,2)=0, (1,3)=1/sqrt2, (2,3)=1/sqrt2 -> mean squared = (0 + 1/2 + 1/2) / 3
    pts = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    assert spread_penalty(pts).item() == pytest.approx(1 / 3)
    x = torch.randn(3, 4, 6, requires_grad=True)
    spread_penalty(x).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("rows,cols", [(8, 3), (3, 8), (5, 5)])
def test_random_orthogonal_is_orthonormal(rows, cols):
    torch.manual_seed(0)
    q = random_orthogonal(rows, cols)
    assert q.shape == (rows, cols)
    gram = q.T @ q if rows >= cols else q @ q.T
    assert torch.allclose(gram, torch.eye(min(rows, cols)), atol=1e-5)


def _model(**lico):
    from lico_tune.train import build_trial
    from lico_tune.spec import validate_trial
    tree = {"data": {"name": "digits", "augment": False}, "model": {"backbone": "tiny_cnn"},
            "text": {"encoder": "hf", "model": "minilm", "n_ctx": 2, "features": "rolled"},
            "lico": lico, "train": {"seed": 0, "threads": 1}}
    return build_trial(validate_trial(tree), torch.device("cpu"))


def test_frozen_anchors_are_a_buffer_that_training_cannot_move():
    parts = _model(alpha=0.0, ot={"anchors": "frozen"})
    model = parts.model
    assert model.proj is None and model.anchors is not None and not model.anchors.requires_grad
    assert "anchors" in model.state_dict()  # saved with the checkpoint
    K, N = len(parts.class_names), model.prompts.n_points
    assert model.anchors.shape[:2] == (K, N)
    assert model.anchors.flatten(0, 1).mean(0).abs().max() < 1e-5  # centred: no common component
    assert between_class_cos(model.anchors) < 0.5


def test_static_text_features_equal_the_per_step_path():
    """Nothing can change the text features (MM's text side detached, OT's anchors frozen): they are
    computed once, and a training step gives the same loss and gradients as computing them every step."""
    lico = {"alpha": 10.0, "mm": {"text_gradient": False}, "ot": {"anchors": "frozen"}}
    parts = _model(**lico)
    model = parts.model.train()
    assert model.static_text
    x, y = next(iter(torch.utils.data.DataLoader(parts.data.train, batch_size=16)))

    def step():
        model.zero_grad(set_to_none=True)
        logits, terms = model(x, y)
        loss, _ = model.loss(logits, y, terms)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.classifier.parameters()]

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    ctx0 = model.prompts.ctx.detach().clone()
    step()  # computes the text features (and caches them)
    assert model._static is not None and model.prompts.ctx.grad is None  # no term reaches the context
    opt.step()  # the image side moves, the context cannot (no gradient: SGD skips it, decay included)
    assert torch.equal(model.prompts.ctx, ctx0)
    cached, cached_grads = step()  # the next step reads the cache
    model._static = None  # the per-step path: the text features computed again
    again, again_grads = step()
    assert torch.equal(cached, again)
    assert all(torch.equal(a, b) for a, b in zip(cached_grads, again_grads))
    # any term that can move the text side turns the cache off
    assert not _model(alpha=10.0, ot={"anchors": "frozen"}).model.static_text  # MM text gradient (default)
    assert not _model(alpha=0.0).model.static_text  # OT with learned anchors and a gradient


def test_health_warnings_are_values_and_their_text_reads_back():
    """HealthWarning values travel as 'kind: detail' text only in result.json and metrics.json;
    read_health_warnings (the one reader) gives the same values back, each once, from the '; '-joined
    metric, a list (metrics.json, the catalog, older result.json files), or nothing at all."""
    from lico_tune.keys import HealthWarning, health_text, read_health_warnings
    collapsed = ot_collapse_warning(0.992, 0.61, 0.99)
    chance = HealthWarning("at chance", "test accuracy 10.8% on 1000 images (binomial p = 0.4)")
    text = health_text([collapsed, chance])
    assert text == f"{collapsed}; {chance}" and str(chance).startswith("at chance: test accuracy")
    assert read_health_warnings(text) == [collapsed, chance]
    assert read_health_warnings([str(chance), str(collapsed), str(chance)]) == [chance, collapsed]
    # an older result.json's text, as written before these were values
    old = "OT degenerate: one text point per class, epsilon has no effect"
    assert read_health_warnings(old) == [HealthWarning("OT degenerate", "one text point per class, epsilon has no effect")]
    assert read_health_warnings("") == read_health_warnings(None) == read_health_warnings(float("nan")) == []
