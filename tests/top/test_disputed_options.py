"""The disputed LICO choices as options (issue 9): MM distance and temperature forms against
independent numpy computations, the POT backend against the native Sinkhorn, and the health
rules that flag an unconverged or degenerate OT solve."""
import math

import numpy as np
import pytest
import torch

from lico_tune.train.health import _mean_offdiag_cos
from lico_tune.keys import HealthWarning
from lico_tune.train.health_rules import MARGINAL_ERR_WARN, mm_warning, ot_convergence_warning, ot_degenerate_warning
from lico_tune.losses import EUCLIDEAN_CLAMP, mm_loss, ot_solve
from lico_tune.models.temperature import Temperature
from lico_tune.spec import MMConfig, validate_trial


def _np_mm(img, txt, tau_f, tau_g, sign, squared=False):
    """KL(A^G || A^F) by explicit loops over pairs, float64 numpy; plain Euclidean distance
    sqrt(max(d^2, 1e-4)) between L2-normalised rows (the released code's clamp)."""
    def dist(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        B = len(x)
        d = np.empty((B, B))
        for i in range(B):
            for j in range(B):
                d2 = float(np.sum((x[i] - x[j]) ** 2))
                d[i, j] = d2 if squared else math.sqrt(max(d2, EUCLIDEAN_CLAMP))
        return d

    def softmax_rows(z):
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    s = -1.0 if sign == "negative" else 1.0
    af, ag = softmax_rows(s * dist(img) / tau_f), softmax_rows(s * dist(txt) / tau_g)
    return float(np.mean(np.sum(ag * (np.log(ag) - np.log(af)), axis=1)))


@pytest.mark.parametrize("sign", ["negative", "positive"])
@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0, 2.659])
def test_mm_euclidean_equals_numpy(sign, tau):
    rng = np.random.default_rng(3)
    img, txt = rng.normal(size=(9, 6)), rng.normal(size=(9, 5))
    txt[4] = txt[1]  # two samples of one class: text distance at the clamp
    got = mm_loss(torch.from_numpy(img), torch.from_numpy(txt), tau, sign=sign, distance="euclidean").item()
    assert got == pytest.approx(_np_mm(img, txt, tau, tau, sign), abs=1e-6, rel=1e-6)
    # and it is not the squared distance, which differs
    sq = mm_loss(torch.from_numpy(img), torch.from_numpy(txt), tau, sign=sign, distance="squared").item()
    assert sq == pytest.approx(_np_mm(img, txt, tau, tau, sign, squared=True), abs=1e-6, rel=1e-6)
    assert abs(sq - got) > 1e-3


def test_separate_target_temperature_equals_numpy():
    rng = np.random.default_rng(4)
    img, txt = rng.normal(size=(7, 4)), rng.normal(size=(7, 3))
    got = mm_loss(torch.from_numpy(img), torch.from_numpy(txt), 0.3, sign="negative", distance="euclidean",
                  target_temperature=0.1).item()
    assert got == pytest.approx(_np_mm(img, txt, 0.3, 0.1, "negative"), abs=1e-6, rel=1e-6)


def test_released_temperature_form_is_the_raw_divisor():
    """Released code: one learnable scalar, initialised 2.659 = log(1/0.07), used as is (not
    exponentiated) as the divisor of both distance matrices, softmax of +distance."""
    temp = Temperature(MMConfig(temperature_form="divisor", temperature=2.659, temperature_min=None,
                                temperature_max=None, target_temperature=None))
    assert temp.parameter() is temp.tau and temp.tau.item() == pytest.approx(2.659)
    assert temp().item() == pytest.approx(2.659) and temp.target_tau() is None
    with torch.no_grad():
        temp.tau.fill_(1.7)  # where training may take it: still the raw value
    assert temp().item() == pytest.approx(1.7)
    rng = np.random.default_rng(5)
    img, txt = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    got = mm_loss(torch.from_numpy(img), torch.from_numpy(txt), temp().double(), sign="positive",
                  distance="euclidean").item()
    assert got == pytest.approx(_np_mm(img, txt, 1.7, 1.7, "positive"), abs=1e-6, rel=1e-6)
    # exp form: tau = exp(log_tau), clamped to its bounds; fixed: a buffer, no parameter
    exp = Temperature(MMConfig(temperature_form="exp", temperature=0.5, temperature_min=0.1, temperature_max=1.0))
    with torch.no_grad():
        exp.log_tau.fill_(math.log(12.3))
    assert exp().item() == pytest.approx(1.0)
    assert Temperature(MMConfig(temperature_form="fixed")).parameter() is None


def test_deprecated_learnable_temperature_maps_to_the_form():
    assert MMConfig(learnable_temperature=False).temperature_form == "fixed"
    assert MMConfig(learnable_temperature=True).temperature_form == "exp"
    assert MMConfig(learnable_temperature=False).learnable_temperature is None
    with pytest.raises(ValueError, match="outside"):
        MMConfig(temperature=5.0, temperature_max=1.0)
    cfg = validate_trial({"train": {}})
    assert cfg.train.nesterov is False and cfg.lico.mm.distance == "euclidean"


OT_REST = {"tol": 1e-6, "gradient": "envelope", "solver": "native"}  # the spec's defaults


def _points(B=6, N=32, M=12, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, D, generator=g, dtype=torch.float64), torch.randn(B, M, D, generator=g,
                                                                               dtype=torch.float64)


@pytest.mark.parametrize("eps", [0.1, 0.01])
def test_pot_backend_equals_native(eps):
    pytest.importorskip("ot.batch")
    x, y = _points()
    x.requires_grad_(True)
    native, info_n = ot_solve(x, y, epsilon=eps, max_iter=20_000, tol=1e-9, gradient="envelope",
                              solver="native")
    g_native, = torch.autograd.grad(native, x)
    pot, info_p = ot_solve(x, y, epsilon=eps, max_iter=20_000, tol=1e-9, gradient="envelope", solver="pot")
    g_pot, = torch.autograd.grad(pot, x)
    assert info_n.marginal_err.item() < 1e-7 and info_p.marginal_err.item() < 1e-7  # both converged
    assert info_n.iters < 20_000 and info_p.iters < 20_000
    assert pot.item() == pytest.approx(native.item(), abs=1e-6)
    assert torch.allclose(g_pot, g_native, atol=1e-6)


def test_convergence_diagnostic_flags_small_epsilon_and_passes_default():
    """Channels-as-points shape of the quick start (B, 32 channels, 12 prompts), unit-norm points."""
    x, y = _points(B=8, N=32, M=12, D=49, seed=1)
    _, bad = ot_solve(x.float(), y.float(), epsilon=1e-3, max_iter=100, **OT_REST)
    _, good = ot_solve(x.float(), y.float(), epsilon=0.1, max_iter=100, **OT_REST)
    assert bad.iters == 100 and bad.marginal_err.item() > MARGINAL_ERR_WARN
    warning = ot_convergence_warning(bad.marginal_err.item(), bad.iters)
    assert warning.kind == "OT not converged" and warning.detail.startswith("marginal error")
    assert "after 100 iterations" in warning.detail
    assert good.iters < 100 and good.marginal_err.item() < 1e-5
    assert ot_convergence_warning(good.marginal_err.item(), good.iters) is None


def test_one_text_point_per_class_is_degenerate():
    assert ot_degenerate_warning(1, "own_class", 1.0) == \
        HealthWarning("OT degenerate", "one text point per class, epsilon has no effect")
    # near-duplicate points (mean-pooled rolled copies) are flagged too, distinct ones are not
    g = torch.Generator().manual_seed(0)
    base = torch.randn(10, 1, 32, generator=g)
    near = base + 0.01 * torch.randn(10, 12, 32, generator=g)
    assert "near-duplicates" in ot_degenerate_warning(12, "own_class", _mean_offdiag_cos(near)).detail
    distinct = torch.randn(10, 12, 32, generator=g)
    assert ot_degenerate_warning(12, "own_class", _mean_offdiag_cos(distinct)) is None
    # all classes' prompts as the target: one point per class still gives K distinct points
    assert ot_degenerate_warning(1, "all_classes", _mean_offdiag_cos(distinct)) is None


def test_mean_offdiag_cos_by_hand():
    pts = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # cosines 0, 1/sqrt2, 1/sqrt2
    assert _mean_offdiag_cos(pts) == pytest.approx((2 / math.sqrt(2)) / 3)


def test_mm_warning_rules():
    m = {"health/tau": 12.3, "health/mm_ref": 0.0132, "health/mm_ref0": 0.0127, "health/mm_ref_change": 0.04}
    assert str(mm_warning(m, 1.0)).startswith("MM inactive: tau grew to 12.3 and MM at the reference")
    assert mm_warning(m, None) is None  # fixed tau: no growth
    assert mm_warning({**m, "health/mm_ref_change": -0.3, "health/grad_frac/mm": 0.2}, 1.0) is None
    low = mm_warning({**m, "health/mm_ref_change": -0.3, "health/grad_frac/mm": 0.001, "health/dose/mm": 0.03}, 1.0)
    assert low.kind == "MM inactive" and low.detail.startswith("tau grew to 12.3 and MM holds 0.1% of the squared gradient norm")
    assert "0.03x CE's" in low.detail


def test_untied_copies_start_identical_and_only_dropout_breaks_their_symmetry():
    """Released code: M untied context copies initialised identical; the projection's dropout is
    the only thing that makes their gradients (and so the copies) differ."""
    from torch import nn

    from lico_tune.models import build_prompt_learner
    from lico_tune.spec import TextConfig

    torch.manual_seed(0)
    p = build_prompt_learner(TextConfig(encoder="hf", model="minilm", n_ctx=3, features="rolled",
                                        context_copies="untied"), ["cat", "dog"])
    assert tuple(p.ctx.shape[:2]) == (3, 3) and torch.equal(p.ctx[0], p.ctx[2])
    pts = p().points  # (K, M copies, D)
    assert _mean_offdiag_cos(pts.detach()) == pytest.approx(1.0, abs=1e-6)
    proj = nn.Sequential(nn.Linear(p.dim, 8), nn.Dropout(0.5))
    for train, differ in ((False, False), (True, True)):
        proj.train(train)
        p.ctx.grad = None
        (proj(p().points) ** 2).sum().backward()
        g = p.ctx.grad  # (M copies, M slots, W)
        rel = ((g[0] - g[1]).norm() / g[0].norm()).item()  # float noise only, or a real difference
        assert (rel > 1e-2) if differ else (rel < 1e-4), (train, rel)
