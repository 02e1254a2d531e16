"""LICO's two extra losses: manifold matching (MM) and optimal transport (OT) (docs/method.md).

Core module: imports only torch (no ray, no streamlit; POT only when lico.ot.solver is 'pot').

The values of every option come from the spec (lico_tune/spec/trial.py): these signatures take
them as required keywords, no defaults of their own.

MM  mm_loss(image_emb, text_emb, temperature, sign=, distance=)  KL(A^G || A^F) between the row-softmaxed
    within-batch distance matrices of the images and of each sample's class text feature.
OT  ot_loss(image_points, text_points, epsilon=, ...)  <pi*, C> per image, batch mean, where pi* is
    the entropic OT plan between the image's local features and its class's prompt features,
    solved for the whole batch at once by `sinkhorn_log` (log domain, early stop on the row
    marginal error, no autograd graph). Gradient: envelope (through C, pi* held fixed) or none.

Which Sinkhorn, and why our own. POT's `ot.batch.solve_batch` (POT 0.9.7, method='log_sinkhorn')
is the same algorithm, but measured slower here, for reasons visible in its source
(ot/batch/_utils.py, `bregman_log_projection_batch`): with grad='envelope' every iteration runs
with autograd recording on the cost (the graph is thrown away when the plan is detached); each
half-step is a full logsumexp (max pass + exp pass); and every 10 iterations it builds the whole
plan just to test convergence. `_sinkhorn_log` below runs under no_grad, keeps the log-plan
itself as its state (no max pass needed after the first two updates, see its docstring), and
reads the row marginals off the row sums it needs anyway. Also: on this x86 CPU, exp of
arguments below ~-87 (float32 underflow) is ~20x slower per element; at eps=1e-4 most of
-C/eps is there, so we clamp the exponent at log(tiny)+5 first (exact to float precision).

Measured with `benchmarks/ot_solvers.py` (one run, 2 shared and busy AMD EPYC cores, 1 torch thread,
torch 2.14.1 CPU, POT 0.9.7.post1, float32, B=128, max_iter=100, tol=1e-6, median of 3 after
warm-up), ms per forward+backward of the loss:
    points    N   M  eps    iters | ours  POT solve_batch  (detached cost)  per-sample ot.sinkhorn
    channels 128 12  0.1     20   |   56        86              71              287
    channels 128 13  0.1     20   |   47        94              70              275
    spatial   64 12  0.1     20   |   33        46              42              190
    spatial   64 13  0.1     15   |   50        50              47              286
    channels 128 12  1e-4   100   |  120       994             883                -
    channels 128 13  1e-4   100   |  124      1177             829                -
    spatial   64 12  1e-4   100   |  105       748             509                -
    spatial   64 13  1e-4   100   |  103       474             744                -
i.e. 1.0-2.0x faster than POT's batch solver at eps=0.1 (noisy machine: repeat runs moved single
entries by 1.5x), 4.6-9.5x at eps=1e-4, and 5-6x faster than a per-sample loop. Not measured on
a GPU: there the convergence test costs one host sync per _CHECK_EVERY iterations.

Small epsilon. With normalised points C lies in [0, 4], so C/eps reaches 4e4 at eps=1e-4. That is
harmless in the log domain (only differences enter exp, via logsumexp), and the plan stays finite.
But Sinkhorn needs O(1/eps) iterations: at eps=1e-4 the 100-iteration default stops far from
converged. Measured on the channels 128x12 shape: the max row-marginal L1 error (total mass 1)
is 0.38 after 100 iterations, 0.24 after 1000, 0.04 after 5000. Columns are exact after every
update, rows are not: at eps=1e-4 with max_iter=100 the "plan" is far from a transport plan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mm_loss", "mm_distances", "sinkhorn_log", "ot_loss", "ot_solve", "spread_penalty", "OTInfo"]

# The early-stop test reads a scalar back from the device; on a GPU that is a sync, so only every
# few iterations. On CPU the test itself is O(B*N), so its cost is negligible either way.
_CHECK_EVERY = 5


def _sq_dists(x: Tensor, y: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of x (..., P, D) and y (..., Q, D) -> (..., P, Q)."""
    d = (x * x).sum(-1, keepdim=True) + (y * y).sum(-1).unsqueeze(-2) - 2.0 * (x @ y.transpose(-1, -2))
    return d.clamp_min(0.0)


# ----------------------------------------------------------------------------- manifold matching

def mm_distances(x: Tensor, distance: str) -> Tensor:
    """Within-batch distance matrix (B, B) of the L2-normalised rows of x (B, D).

    "squared":   ||x_i - x_j||^2 = 2 - 2 cos (this project's first version).
    "euclidean": sqrt(max(||x_i - x_j||^2, 1e-4)), the released code's plain Euclidean distance;
                 the clamp before the square root keeps the gradient finite on the diagonal
                 (d sqrt(u)/du is infinite at 0), so D_ii = 0.01, not 0.
    """
    if distance not in ("squared", "euclidean"):
        raise ValueError(f"distance must be 'euclidean' or 'squared', got {distance!r}")
    xn = F.normalize(x, dim=-1)
    d2 = _sq_dists(xn, xn)
    return d2 if distance == "squared" else d2.clamp_min(EUCLIDEAN_CLAMP).sqrt()


EUCLIDEAN_CLAMP = 1e-4  # the released code's clamp of the squared distance before the square root


def mm_loss(image_emb: Tensor, text_emb: Tensor, temperature: Union[float, Tensor], *,
            sign: str, distance: str, target_temperature: Union[float, Tensor, None] = None) -> Tensor:
    """Manifold-matching loss L_MM = KL(A^G || A^F), summed over each row, mean over the batch.

    image_emb: (B, Di) image embeddings e_i (GAP of the feature map).
    text_emb:  (B, Dt) the class text feature t_{y_i} of each sample's label (rows repeat for
               samples of the same class; then their text distance is 0).
    temperature: tau, a float or a 0-dim tensor (learnable: it receives a gradient). It divides
               both distance matrices, unless target_temperature is given.
    target_temperature: tau of the target A^G alone (then `temperature` is the student's, A^F's).
               With one tau shared by both softmaxes, tau -> infinity makes both rows uniform and
               the KL -> 0 whatever the geometry: a degenerate optimum that a learnable tau finds.
               A separate (fixed) target tau keeps A^G sharp, so the student cannot escape that way.
    sign: "negative" -> A = row-softmax(-D / tau) (paper); "positive" -> row-softmax(+D / tau)
          (the released code's variant).
    distance: "squared" or "euclidean" (see mm_distances), on L2-normalised vectors, diagonal
          included (D_ii is part of each row's softmax).
    A^G is the target, but it is not detached: the gradient flows into both sides, since the text
    side (context vectors, projection) is learnable.
    """
    if sign not in ("negative", "positive"):
        raise ValueError(f"sign must be 'negative' or 'positive', got {sign!r}")
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[0] != text_emb.shape[0]:
        raise ValueError(f"expected (B, Di) and (B, Dt) with the same B, got {tuple(image_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    s = -1.0 if sign == "negative" else 1.0
    tau_g = temperature if target_temperature is None else target_temperature
    log_af = torch.log_softmax(s * mm_distances(image_emb, distance) / temperature, dim=-1)  # (B, B)
    log_ag = torch.log_softmax(s * mm_distances(text_emb, distance) / tau_g, dim=-1)  # (B, B)
    # KL(A^G || A^F) = sum_j A^G_ij (log A^G_ij - log A^F_ij); 'batchmean' divides by B.
    return F.kl_div(log_af, log_ag, reduction="batchmean", log_target=True)


# ----------------------------------------------------------------------------- optimal transport

def _exp_floor(dtype: torch.dtype) -> float:
    """A log value safely above exp's underflow for dtype (-82 for float32, -703 for float64).

    exp of arguments below log(finfo.tiny) (about -87 in float32) takes a slow path on x86 CPUs:
    measured 20x slower per element here. Clamping there first changes each sum below by at most
    M * exp(-82) ~ 1e-35 against sums >= 1/(M N^2): nothing at float precision.
    """
    return math.log(torch.finfo(dtype).tiny) + 5.0


def _lse(x: Tensor, dim: int, floor: float) -> Tensor:
    """logsumexp over dim (keepdim), with the exponent clamped at floor (see _exp_floor)."""
    m = x.amax(dim=dim, keepdim=True)
    return (x - m).clamp_min_(floor).exp_().sum(dim=dim, keepdim=True).log_().add_(m)


def _sinkhorn_log(cost: Tensor, epsilon: float, max_iter: int, tol: float) -> tuple[Tensor, int, Tensor]:
    """sinkhorn_log, also returning the iterations run and the final row-marginal error.

    The state is the log-plan L = K + u + v itself (K = -C/eps), updated in place: a row update
    subtracts log(row sum / a) from each row, a column update log(col sum / b) from each column.
    The first row and column updates use a full (max-shifted) logsumexp, because at small eps the
    kernel exp(-C/eps) underflows. After them every row sum is >= a/M^2 and every column sum
    >= b/N^2 (each update rescales a row or column by at least a = 1/N, resp. b = 1/M, since the
    total mass is 1), so exp(L) never underflows a whole row or column and the plain
    log(sum(exp(L))) is exact: no max pass needed, about half the work of a logsumexp. Keeping L
    rather than K + u + v also avoids the float32 cancellation of K ~ -4e4 against u + v ~ +4e4
    at eps = 1e-4: the entries that matter have |L| ~ log(N M).

    The error returned is a 0-dim tensor on cost's device, max over the batch of ||pi 1 - a||_1 of
    the returned plan (columns are exact): reading it is left to the caller, so that a GPU is not
    synchronised for it (health.py reads it once per epoch).
    """
    if cost.ndim != 3:
        raise ValueError(f"cost must be (B, N, M), got {tuple(cost.shape)}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    B, N, M = cost.shape
    log_a, log_b, a = -math.log(N), -math.log(M), 1.0 / N
    with torch.no_grad():
        floor = _exp_floor(cost.dtype)
        L = cost.detach() / (-epsilon)  # (B, N, M) log-kernel; down to -4e4 at eps=1e-4: fine in log domain
        L.sub_(_lse(L, 2, floor).sub_(log_a))  # rows: sum_j pi_ij = a
        L.sub_(_lse(L, 1, floor).sub_(log_b))  # columns: sum_i pi_ij = b
        it = 1
        for it in range(1, max_iter):
            row = L.clamp_min(floor).exp_().sum(dim=2, keepdim=True)  # (B, N, 1) row sums of the plan
            if it % _CHECK_EVERY == 0:
                if (row - a).abs_().sum(dim=1).max().item() < tol:  # max over the batch of ||pi 1 - a||_1
                    break
            L.sub_(row.log_().sub_(log_a))
            col = L.clamp_min(floor).exp_().sum(dim=1, keepdim=True)  # (B, 1, M)
            L.sub_(col.log_().sub_(log_b))  # columns now exact
        else:
            it = max_iter
        plan = L.exp_()  # (B, N, M), in place: L is not needed any more
        err = marginal_error(plan)
    return plan, it, err


def marginal_error(plan: Tensor) -> Tensor:
    """Max over the batch of the L1 row-marginal error ||pi 1 - 1/N||_1 of plans (B, N, M): a
    0-dim tensor (total mass is 1, so 0.38 means 38% of the mass sits in the wrong rows)."""
    return (plan.sum(dim=2) - 1.0 / plan.shape[1]).abs().sum(dim=1).max()


def sinkhorn_log(cost: Tensor, epsilon: float, max_iter: int, tol: float) -> Tensor:
    """Entropic OT plans for a batch of cost matrices, log-domain Sinkhorn, uniform marginals.

    cost: (B, N, M). Marginals a = 1/N (rows), b = 1/M (columns). Solves
    min_pi <pi, C> + eps * sum pi log pi  s.t. pi 1 = a, pi^T 1 = b, for all B problems at once
    (no Python loop over samples). Stops early once the max over the batch of the L1 row-marginal
    error ||pi 1 - a||_1 is below tol (tested every few iterations; columns are exact after each
    update). Runs under torch.no_grad: the returned plan (B, N, M) carries no graph (envelope
    theorem: the loss's gradient needs only the plan's value).
    """
    return _sinkhorn_log(cost, float(epsilon), int(max_iter), float(tol))[0]


def _sinkhorn_pot(cost: Tensor, epsilon: float, max_iter: int, tol: float) -> tuple[Tensor, int, Tensor]:
    """The same solve by POT's batched log-domain Sinkhorn (`ot.batch.solve_batch`, POT >= 0.9.6),
    on the detached cost: a real alternative backend and a live cross-check of `_sinkhorn_log`.
    POT tests convergence with the L2 norm of the row-marginal error every 10 iterations; the
    error returned here is our L1 one, measured on its plan, so both backends report alike."""
    try:
        from ot.batch import solve_batch
    except ImportError as exc:  # an old POT without the batch module
        raise RuntimeError(f"lico.ot.solver 'pot' needs POT >= 0.9.6 with ot.batch ({exc}); "
                           f"pip install -U POT, or use lico.ot.solver: native") from None
    with torch.no_grad():
        res = solve_batch(cost.detach(), reg=epsilon, max_iter=max_iter, tol=tol,
                          method="log_sinkhorn", grad="detach")
        plan = res.plan
        iters = int(res.log["n_iter"]) + 1  # POT's count is the 0-based index of the last iteration
        return plan, iters, marginal_error(plan)


SOLVERS = {"native": _sinkhorn_log, "pot": _sinkhorn_pot}


@dataclass
class OTInfo:
    """What one OT solve did: iterations run (a Python int, known without a device sync) and the
    final max row-marginal error (a 0-dim tensor, read it when you need it)."""
    iters: int
    marginal_err: Tensor


def ot_solve(image_points: Tensor, text_points: Tensor, *, epsilon: float, max_iter: int, tol: float,
             gradient: str, solver: str) -> tuple[Tensor, OTInfo]:
    """LICO's OT loss (mean over the batch of <pi*, C>) and the solve's diagnostics.

    image_points: (B, N, D) local features of each image's feature map (N points in R^D).
    text_points:  (B, M, D) the M prompt features the image is transported to (its own class's,
        or all K*M prompts: lico.ot.target), projected to width D.
    Both are L2-normalised along D; C_ij = ||a_i - b_j||^2 in [0, 4] (B, N, M); pi* = the entropic
    plan of C (solver "native": `_sinkhorn_log`; "pot": POT's ot.batch), held fixed.
    gradient="envelope": the gradient flows through C only (pi* is a constant). It is the exact
        gradient of the entropic OT objective W_eps(C) = min_pi <pi,C> + eps*sum pi log pi
        (not of <pi*(C), C>, which also moves through pi*).
    gradient="none": everything under no_grad (the released code's variant: OT trains nothing);
        same value, no grad.
    The cost and the solve run in float32 at least (autocast is switched off here).
    """
    if gradient not in ("envelope", "none"):
        raise ValueError(f"gradient must be 'envelope' or 'none', got {gradient!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
    if image_points.ndim != 3 or text_points.ndim != 3 or image_points.shape[0] != text_points.shape[0] \
            or image_points.shape[2] != text_points.shape[2]:
        raise ValueError(f"expected (B, N, D) and (B, M, D), got {tuple(image_points.shape)} and "
                         f"{tuple(text_points.shape)}")
    dtype = torch.promote_types(torch.promote_types(image_points.dtype, text_points.dtype), torch.float32)
    with torch.set_grad_enabled(torch.is_grad_enabled() and gradient == "envelope"), \
            torch.autocast(image_points.device.type, enabled=False):
        x = F.normalize(image_points.to(dtype), dim=-1)  # (B, N, D)
        y = F.normalize(text_points.to(dtype), dim=-1)  # (B, M, D)
        cost = _sq_dists(x, y)  # (B, N, M)
        plan, iters, err = SOLVERS[solver](cost, float(epsilon), int(max_iter), float(tol))  # no graph
        return (plan * cost).sum(dim=(1, 2)).mean(), OTInfo(iters, err)


def ot_loss(image_points: Tensor, text_points: Tensor, *, epsilon: float, max_iter: int, tol: float,
            gradient: str, solver: str) -> Tensor:
    """LICO's OT loss alone: `ot_solve` without the diagnostics. The value is the transport cost
    <pi*, C> (no entropy term), while its gradient is that of the entropic objective (see ot_solve)."""
    return ot_solve(image_points, text_points, epsilon=epsilon, max_iter=max_iter, tol=tol,
                    gradient=gradient, solver=solver)[0]


def spread_penalty(points: Tensor) -> Tensor:
    """Anti-collapse penalty on OT's projected text points (K, N, P), all K*N of them: the mean
    squared cosine between distinct points, 0 when they are orthogonal, 1 when all coincide.
    (lico.ot.spread_weight; not in the paper or any released code.)"""
    p = F.normalize(points.flatten(0, -2).float(), dim=-1)  # (K*N, P)
    n = p.shape[0]
    if n < 2:
        return p.new_zeros(())
    cos = p @ p.T  # (K*N, K*N)
    return (cos.square().sum() - cos.diagonal().square().sum()) / (n * (n - 1))
