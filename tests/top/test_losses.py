"""lico_tune.losses: the OT plan and loss against POT, the envelope gradient against finite
differences of the entropic OT objective, and MM against hand and numpy computations."""
import math

import numpy as np
import ot
import pytest
import torch

from lico_tune.losses import mm_loss, ot_loss, sinkhorn_log

# The spec's values (the losses take every option as a required keyword)
SQ = {"sign": "negative", "distance": "squared"}  # the hand-worked MM cases use squared distances
ENV = {"gradient": "envelope", "solver": "native"}
OT = {"epsilon": 0.1, "max_iter": 100, "tol": 1e-6, **ENV}

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _points(B, N, M, D, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, D, generator=g, dtype=dtype), torch.randn(B, M, D, generator=g, dtype=dtype)


def _np_cost(x, y):
    """C_ij = ||x_i/|x_i| - y_j/|y_j|||^2 for one sample, in numpy (independent of the module)."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return ot.dist(x, y, metric="sqeuclidean")


def _pot_plan(C, eps):
    """POT's per-sample log-domain Sinkhorn, run to full convergence (float64)."""
    N, M = C.shape
    return ot.sinkhorn(np.full(N, 1.0 / N), np.full(M, 1.0 / M), C, reg=eps, method="sinkhorn_log",
                       numItermax=200_000, stopThr=1e-14)


# ----------------------------------------------------------------------------- OT vs POT

@pytest.mark.parametrize("B,N,M,D", [(3, 7, 5, 4), (2, 4, 9, 6)])
@pytest.mark.parametrize("eps", [0.1, 0.05])
def test_plan_and_loss_match_pot(B, N, M, D, eps):
    x, y = _points(B, N, M, D, seed=N * M)
    costs = [_np_cost(x[b].numpy(), y[b].numpy()) for b in range(B)]
    ref_plans = np.stack([_pot_plan(C, eps) for C in costs])  # (B, N, M)
    ref_loss = np.mean([(P * C).sum() for P, C in zip(ref_plans, costs)])

    plan = sinkhorn_log(torch.from_numpy(np.stack(costs)), eps, max_iter=20_000, tol=1e-13)
    assert plan.shape == (B, N, M) and plan.dtype == F64
    np.testing.assert_allclose(plan.numpy(), ref_plans, atol=1e-5, rtol=0)
    loss = ot_loss(x, y, epsilon=eps, max_iter=20_000, tol=1e-13, **ENV)
    assert loss.shape == ()
    assert abs(loss.item() - ref_loss) < 1e-5


@pytest.mark.parametrize("B,N,M", [(1, 6, 3), (1, 3, 8), (4, 10, 13)])
def test_sinkhorn_marginals_and_no_graph(B, N, M):
    g = torch.Generator().manual_seed(B * N * M)
    C = (torch.rand(B, N, M, generator=g, dtype=F64) * 4).requires_grad_(True)
    tol = 1e-10
    plan = sinkhorn_log(C, 0.2, max_iter=50_000, tol=tol)
    assert not plan.requires_grad and plan.grad_fn is None
    assert (plan >= 0).all()
    row_err = (plan.sum(2) - 1.0 / N).abs().sum(1)  # L1 per sample
    col_err = (plan.sum(1) - 1.0 / M).abs().sum(1)
    assert row_err.max() < tol
    assert col_err.max() < 1e-12  # columns are exact after every update


def test_sinkhorn_small_eps_stays_finite_float32():
    """eps=1e-4 on normalised points: C/eps up to 4e4; the log domain must not overflow."""
    x, y = _points(8, 64, 12, 16, seed=1, dtype=torch.float32)
    x[:, 0] = -y[:, 0]  # make some costs exactly 4 (antipodal points)
    x.requires_grad_(True)
    loss = ot_loss(x, y, epsilon=1e-4, max_iter=50, tol=1e-6, **ENV)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    C = torch.cdist(torch.nn.functional.normalize(x.detach(), dim=-1),
                    torch.nn.functional.normalize(y, dim=-1)) ** 2
    plan = sinkhorn_log(C, 1e-4, max_iter=50, tol=1e-6)
    assert torch.isfinite(plan).all()
    assert (plan.sum(1) - 1 / 12).abs().max() < 1e-5  # columns exact even when rows have not converged
    assert abs(plan.sum(dim=(1, 2)) - 1).max() < 1e-4


def test_ot_loss_bf16_autocast_runs_in_float32():
    x, y = _points(2, 8, 3, 5, seed=2, dtype=torch.float32)
    ref = ot_loss(x, y, **OT)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ot_loss(x, y, **OT)
    assert got.dtype == torch.float32 and abs(got - ref) < 1e-6


# ----------------------------------------------------------------------------- the envelope gradient

def _neg_entropy_term(x, y, eps, tol):
    """eps * batch-mean of sum(pi log pi) at the optimal plan of C(x, y): a constant for autograd."""
    with torch.no_grad():
        C = torch.cdist(torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(y, dim=-1)) ** 2
        pi = sinkhorn_log(C, eps, max_iter=50_000, tol=tol)
        return eps * (pi * pi.log()).sum(dim=(1, 2)).mean()


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_envelope_gradient_is_gradient_of_entropic_ot(eps):
    """W_eps(C) = min_pi <pi,C> + eps sum pi log pi has dW/dC = pi* (envelope theorem).

    f = ot_loss(x, y) + eps*negentropy(pi*(x, y)) equals W_eps(C(x, y)) (batch mean). Autograd
    differentiates only the ot_loss part (the entropy term is a constant to it): that is the
    envelope gradient under test. gradcheck's finite differences re-solve pi* at every perturbed
    point, so they measure the true gradient of W_eps. They agree only if ot_loss's gradient is
    exactly <pi*, dC> with the right cost, normalisation and plan.
    """
    tol = 1e-14
    x, y = _points(2, 4, 3, 5, seed=3)
    x.requires_grad_(True)
    y.requires_grad_(True)

    def f(x, y):
        return ot_loss(x, y, epsilon=eps, max_iter=50_000, tol=tol, **ENV) + _neg_entropy_term(x, y, eps, tol)

    assert torch.autograd.gradcheck(f, (x, y), eps=1e-6, atol=1e-6, rtol=1e-4)

    # The same gradient is *not* the derivative of <pi*(C), C> alone (pi* moves with C): if this
    # passed, the test above would be unable to tell the envelope from full differentiation.
    def g(x, y):
        return ot_loss(x, y, epsilon=eps, max_iter=50_000, tol=tol, **ENV)

    assert not torch.autograd.gradcheck(g, (x, y), eps=1e-6, atol=1e-6, rtol=1e-4, raise_exception=False,
                                        fast_mode=True)


def test_gradient_none_gives_same_value_and_no_grad():
    x, y = _points(3, 6, 4, 5, seed=4)
    x.requires_grad_(True)
    y.requires_grad_(True)
    env = ot_loss(x, y, **{**OT, "gradient": "envelope"})
    none = ot_loss(x, y, **{**OT, "gradient": "none"})
    assert env.requires_grad
    assert not none.requires_grad and none.grad_fn is None
    assert torch.equal(env.detach(), none)
    with pytest.raises(ValueError, match="gradient"):
        ot_loss(x, y, **{**OT, "gradient": "full"})


# ----------------------------------------------------------------------------- manifold matching

def _np_mm(img, txt, tau, sign=-1.0):
    """The MM loss with plain loops: normalise, squared distances, row softmax, KL(A^G||A^F), mean."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    B = len(img)
    total = 0.0
    for i in range(B):
        lf = [sign * np.sum((img[i] - img[j]) ** 2) / tau for j in range(B)]
        lg = [sign * np.sum((txt[i] - txt[j]) ** 2) / tau for j in range(B)]
        af = np.exp(lf) / np.sum(np.exp(lf))
        ag = np.exp(lg) / np.sum(np.exp(lg))
        total += sum(ag[j] * math.log(ag[j] / af[j]) for j in range(B))
    return total / B


def test_mm_zero_when_geometries_match():
    g = torch.Generator().manual_seed(5)
    img = torch.randn(3, 4, generator=g, dtype=F64)
    q, _ = torch.linalg.qr(torch.randn(6, 4, generator=g, dtype=F64))  # (6, 4), orthonormal columns
    txt = 3.0 * img @ q.T  # (3, 6): another width and scale, the same normalised geometry
    for tau in (0.07, 1.0):
        for sign in ("negative", "positive"):
            assert abs(mm_loss(img, txt, tau, sign=sign, distance="squared").item()) < 1e-6


def test_mm_hand_worked_three_samples():
    # images on the unit circle: e1=(1,0), e2=(0,1), e3=(-1,0) -> squared distances d12=2, d13=4, d23=2.
    # labels: samples 1 and 2 share a class, so t1 = t2 = (1,0), t3 = (0,1) -> d12=0, d13=2, d23=2.
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=F64)
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=F64)
    tau = 1.0
    DF = [[0, 2, 4], [2, 0, 2], [4, 2, 0]]
    DG = [[0, 0, 2], [0, 0, 2], [2, 2, 0]]

    def softmax(row):
        z = sum(math.exp(-d / tau) for d in row)
        return [math.exp(-d / tau) / z for d in row]

    want = sum(sum(g * math.log(g / f) for g, f in zip(softmax(DG[i]), softmax(DF[i]))) for i in range(3)) / 3
    got = mm_loss(img, txt, tau, **SQ).item()
    assert want > 0.1
    assert abs(got - want) < 1e-9
    assert abs(got - _np_mm(img.numpy(), txt.numpy(), tau)) < 1e-9


def test_mm_matches_numpy_loop_and_sign_differs():
    g = torch.Generator().manual_seed(6)
    img = torch.randn(5, 7, generator=g, dtype=F64)
    txt = torch.randn(5, 3, generator=g, dtype=F64)
    txt[1] = txt[3]  # two samples of one class share their text feature
    for tau in (0.5, 2.0):
        neg = mm_loss(img, txt, tau, **SQ).item()
        pos = mm_loss(img, txt, tau, sign="positive", distance="squared").item()
        assert neg > 0 and pos > 0
        assert abs(neg - _np_mm(img.numpy(), txt.numpy(), tau, -1.0)) < 1e-9
        assert abs(pos - _np_mm(img.numpy(), txt.numpy(), tau, +1.0)) < 1e-9
        assert abs(neg - pos) > 1e-3
    with pytest.raises(ValueError, match="sign"):
        mm_loss(img, txt, 1.0, sign="minus", distance="squared")


def test_mm_gradients_reach_temperature_and_both_sides():
    g = torch.Generator().manual_seed(7)
    img = torch.randn(4, 8, generator=g, requires_grad=True)
    txt = torch.randn(4, 5, generator=g, requires_grad=True)
    log_tau = torch.tensor(0.0, requires_grad=True)
    loss = mm_loss(img, txt, log_tau.exp(), **SQ)
    loss.backward()
    for t in (log_tau, img, txt):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
