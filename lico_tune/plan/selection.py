"""What a search may select on, and how a configuration is repeated over seeds (no Ray).

* **Selection.** Searchers, schedulers and "best configuration" use `val/*` metrics: the validation
  split (`data.val_fraction`, fixed per experiment by `data.val_seed`). `test/*`, and `saliency/*`
  and `shortcut/*` (computed on test images), are refused in `search.metrics` unless
  `search.allow_test_selection: true`, which prints a warning: selecting on the test set makes its
  numbers optimistic.
* **Repeats.** With `search.repeats: N` every configuration a searcher proposes runs N times; repeat
  i (the trial's `__trial_index__`, Ray's `Repeater.TRIAL_INDEX`) trains with
  `train.seed = s + i`, s the seed the configuration resolves to (base, then arm). `train.seed` can
  therefore not be a searched axis too. The seeds of one configuration share a `config_id`
  (the identity names are in lico_tune/keys.py).
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..errors import SpecError
from ..keys import SEED_PATH

if TYPE_CHECKING:
    from ..spec import Spec

TEST_PREFIXES = ("test/", "saliency/", "shortcut/")   # metrics measured on test images


def is_test_metric(metric: str) -> bool:
    return metric.startswith(TEST_PREFIXES)


def check_selection(spec: "Spec", resolved: list, warn=None) -> None:
    """Refuse selection on test metrics (unless allowed, then warn) and val/* metrics that some
    trial cannot report. `resolved`: the TrialConfig of every cell."""
    s = spec.search
    test = [m for m in s.metrics if is_test_metric(m)]
    if test and not s.allow_test_selection:
        val = ", ".join("val/" + m.removeprefix("test/") + f": {s.metrics[m]}" for m in test)
        raise SpecError(
            f"search.metrics selects on test-set metrics ({', '.join(test)}): the test numbers would then be "
            f"optimistic. Search on the validation split instead: set base.data.val_fraction (e.g. 0.1) and "
            f"metrics {{{val}}} (val/saliency/* needs base.eval.val_saliency: true). To select on the test set "
            f"anyway (e.g. to reproduce the released code's protocol) set search.allow_test_selection: true.")
    if test:
        (warn or (lambda m: print(m, file=sys.stderr)))(
            f"WARNING search.allow_test_selection: selecting on {', '.join(test)}; the test numbers of the "
            f"best configuration are optimistic, do not report them as held-out results.")
    val = [m for m in s.metrics if m.startswith("val/")]
    if val and any(cfg.data.val_fraction <= 0 for cfg in resolved):
        raise SpecError(f"search.metrics names {', '.join(val)} but some trials have no validation split "
                        f"(data.val_fraction is 0): set base.data.val_fraction, e.g. 0.1.")
    if any(m.startswith("val/saliency/") for m in val) and any(not cfg.eval.val_saliency for cfg in resolved):
        raise SpecError(f"search.metrics names {', '.join(m for m in val if m.startswith('val/saliency/'))}: "
                        f"set base.eval.val_saliency: true so every trial explains validation images.")


def check_repeats(spec: "Spec") -> None:
    s = spec.search
    if s.repeats == 1:
        return
    if s.scheduler.name == "asha":
        raise SpecError(f"search.repeats {s.repeats} with search.scheduler 'asha': ASHA stops single trials "
                        f"early, so a configuration's repeats would end at different epochs and their mean "
                        f"would mix budgets. Use scheduler 'fifo' with repeats, or repeats 1 with ASHA.")
    if SEED_PATH in s.space:
        raise SpecError(f"search.space.{SEED_PATH} with search.repeats {s.repeats}: repeats already set the "
                        f"seeds (repeat i trains with {SEED_PATH} = base seed + i). Remove the {SEED_PATH} "
                        f"axis (and set repeats to the number of seeds), or set repeats to 1.")
