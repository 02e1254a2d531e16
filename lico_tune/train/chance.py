"""Did the explained model learn anything? The "at chance" rule, in one place.

Saliency of a model that learned nothing says nothing about the explanation method, yet its
insertion/pointing numbers look like any others. So at the end of every trial (every arm, CE
included) the explained model's test predictions are checked:

  at chance   the number correct out of the n test images is not significantly above what always
              answering the test set's most frequent class gets: a one-sided exact binomial test
              (scipy.stats.binomtest, alternative='greater') of `correct` of `n` against
              p0 = (count of the most frequent true class) / n, p >= CHANCE_ALPHA. p0 is ~1/K on
              balanced data and the majority share on imbalanced data (a one-class model gets it).
  collapsed   one class is predicted for >= COLLAPSE_SHARE of the test images.

It is only a warning (no selection happens on test).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.stats import binomtest
from torch import Tensor

from ..keys import AT_CHANCE_FLAG, CHANCE_ALPHA, CHANCE_KINDS, CHANCE_P, COLLAPSED_FLAG, TOP_PRED_SHARE, HealthWarning

COLLAPSE_SHARE = 0.9     # share of test images predicted as one class from which predictions count as collapsed


@dataclass(frozen=True)
class ChanceCheck:
    correct: int
    n: int
    p0: float               # share of the most frequent true class: what always answering it gets
    p_value: float          # one-sided exact binomial p of `correct` of `n` against p0
    top_pred_share: float   # share of the images predicted as the most predicted class
    top_pred: int           # that class (-1 when n = 0)

    @property
    def at_chance(self) -> bool:
        return self.p_value >= CHANCE_ALPHA

    @property
    def collapsed(self) -> bool:
        return self.n > 0 and self.top_pred_share >= COLLAPSE_SHARE

    def metrics(self) -> dict:
        return {TOP_PRED_SHARE: self.top_pred_share, CHANCE_P: self.p_value,
                AT_CHANCE_FLAG: float(self.at_chance), COLLAPSED_FLAG: float(self.collapsed)}

    def warnings(self, what: str = "test accuracy") -> list[HealthWarning]:
        out = []
        at_chance, collapsed = CHANCE_KINDS
        if self.at_chance:
            out.append(HealthWarning(at_chance, (
                f"{what} {100 * self.correct / max(1, self.n):.1f}% on {self.n} images is not above the "
                f"{100 * self.p0:.1f}% of always answering the most frequent class (binomial p = "
                f"{self.p_value:.2g}): the model learned nothing, so its saliency numbers say nothing about "
                f"the method. Train longer or check lr.")))
        if self.collapsed:
            out.append(HealthWarning(collapsed, (
                f"{100 * self.top_pred_share:.1f}% of the {self.n} test images are predicted as class "
                f"{self.top_pred} (threshold {100 * COLLAPSE_SHARE:.0f}%): its saliency maps explain one "
                f"answer, not the classes.")))
        return out


def chance_check(correct: int, n: int, p0: float, top_pred_share: float, top_pred: int = -1) -> ChanceCheck:
    """The rule on counts: `correct` of `n` test images right, p0 the most frequent true class's
    share, top_pred_share the most predicted class's share. n = 0: p = 1 (nothing shows learning)."""
    p = binomtest(int(correct), int(n), float(p0), alternative="greater").pvalue if n > 0 else 1.0
    return ChanceCheck(int(correct), int(n), float(p0), float(p), float(top_pred_share), int(top_pred))


def check_predictions(pred: Tensor, labels: Tensor) -> ChanceCheck:
    """The rule on predicted and true class indices, both (n,) integer tensors."""
    n = int(labels.numel())
    if n == 0:
        return chance_check(0, 0, 0.0, 0.0)
    pred, labels = pred.long().cpu(), labels.long().cpu()
    k = int(max(pred.max(), labels.max())) + 1
    true_counts = torch.bincount(labels, minlength=k)   # (K,)
    pred_counts = torch.bincount(pred, minlength=k)     # (K,)
    return chance_check(int((pred == labels).sum()), n, int(true_counts.max()) / n,
                        int(pred_counts.max()) / n, int(pred_counts.argmax()))


__all__ = ["COLLAPSE_SHARE", "ChanceCheck", "chance_check", "check_predictions"]
