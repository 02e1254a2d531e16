"""The warning rules of the LICO health checks (train/health.py): thresholds and the text of
each warning (the kinds: lico_tune.keys.WARNING_KINDS). Pure functions of a trial's health metrics
for one epoch, `m`, each giving a HealthWarning (lico_tune/keys.py: kind, detail) or None."""
from __future__ import annotations

from typing import Optional

from ..keys import MM_REF, MM_REF0, MM_REF_CHANGE, TAU, HealthWarning, dose, grad_frac

MARGINAL_ERR_WARN = 0.01  # final row-marginal L1 error above which a plan is "not converged" (1% of the mass)
TAU_GROWTH_WARN = 2.0  # tau grown by this factor over its initial value, with MM_ref not falling: inactive
NEAR_DUPLICATE_COS = 0.99  # mean cosine of a class's OT text points above which OT is near-degenerate
# Mean cosine between OT's text points of different classes above which OT's targets no longer tell
# the classes apart (one class-agnostic pull). Measured on Fashion-MNIST with MiniLM: per-token points
# start near 0.6 and collapsed trials end above 0.99; frozen anchors stay near 0.
COLLAPSE_COS = 0.95
# A term whose squared gradient norm at F is under 1% of the total (a norm under ~0.1x CE's when the
# gradients are orthogonal, as measured: |cos| <= 0.02) trains (almost) nothing.
FRACTION_FLOOR = 0.01


def mm_warning(m: dict, tau_initial: Optional[float]) -> Optional[HealthWarning]:
    """'MM inactive' when a learnable tau (initially tau_initial; None = fixed) grew more than
    TAU_GROWTH_WARN-fold and MM at the reference temperature did not fall, or when MM's fraction of
    the squared gradient norm at the backbone's feature map is below FRACTION_FLOOR."""
    grew = tau_initial is not None and m[TAU] > TAU_GROWTH_WARN * tau_initial
    if grew and m[MM_REF_CHANGE] >= 0:
        return HealthWarning("MM inactive", f"tau grew to {m[TAU]:.3g} and MM at the reference temperature did "
                f"not fall ({m[MM_REF]:.4g} vs {m[MM_REF0]:.4g} untrained)")
    frac = m.get(grad_frac("mm"))
    if frac is not None and frac < FRACTION_FLOOR:
        mm_dose = m.get(dose("mm"))
        ratio = f", |grad| {mm_dose:.2g}x CE's" if mm_dose is not None else ""
        return HealthWarning("MM inactive", f"{'tau grew to %.3g and ' % m[TAU] if grew else ''}MM holds "
                f"{100 * frac:.2g}% of the squared gradient norm at the backbone's features{ratio} "
                f"(floor {100 * FRACTION_FLOOR:.0f}%)")
    return None


def ot_inactive_warning(m: dict, gradient: str) -> Optional[HealthWarning]:
    """'OT inactive' when OT's fraction of the squared gradient norm at F is below FRACTION_FLOOR."""
    frac = m.get(grad_frac("ot"))
    if frac is None or frac >= FRACTION_FLOOR:
        return None
    why = (" (lico.ot.gradient none: the released code's no-gradient OT trains nothing, although its loss "
           "is printed)" if gradient == "none" else "")
    return HealthWarning("OT inactive", f"{100 * frac:.2g}% of the squared gradient norm at the backbone's features "
            f"(floor {100 * FRACTION_FLOOR:.0f}%){why}")


def ot_convergence_warning(marginal_err: float, iters: int) -> Optional[HealthWarning]:
    """'OT not converged' when a plan's final row-marginal L1 error exceeds MARGINAL_ERR_WARN."""
    if marginal_err > MARGINAL_ERR_WARN:
        return HealthWarning("OT not converged", f"marginal error {marginal_err:.2g} > {MARGINAL_ERR_WARN} after "
                f"{iters} iterations (raise lico.ot.max_iter or lico.ot.epsilon)")
    return None


def ot_degenerate_warning(n_points: int, target: str, text_cos: float) -> Optional[HealthWarning]:
    """'OT degenerate' when each image is transported to one point (the plan is then fixed: every
    local feature sends all its mass there, whatever epsilon) or to near-duplicate points.
    text_cos: the mean cosine of a class's points as OT sees them (after the projection)."""
    if n_points == 1 and target == "own_class":
        return HealthWarning("OT degenerate", "one text point per class, epsilon has no effect")
    if text_cos > NEAR_DUPLICATE_COS:
        return HealthWarning("OT degenerate", f"the {n_points} text points of a class are near-duplicates as OT sees them "
                f"(mean cosine {text_cos:.4f} after the projection), epsilon has almost no effect")
    return None


def ot_collapse_warning(between: float, between0: Optional[float], to_image: Optional[float]) -> Optional[HealthWarning]:
    """'OT collapsed' when OT's text points of different classes have a mean cosine above
    COLLAPSE_COS: its targets no longer distinguish the classes (between0: the value before
    training; to_image: their mean cosine with the mean image point)."""
    if not between > COLLAPSE_COS:  # also nan (one class)
        return None
    start = f", {between0:.3f} before training" if between0 is not None else ""
    image = f"; cosine {to_image:.3f} with the mean image point" if to_image is not None else ""
    return HealthWarning("OT collapsed", f"OT's text points of different classes have mean cosine {between:.4f} "
            f"(> {COLLAPSE_COS}{start}{image}): its targets no longer distinguish the classes, OT is one "
            f"class-agnostic pull (try lico.ot.anchors: frozen or lico.ot.spread_weight)")
