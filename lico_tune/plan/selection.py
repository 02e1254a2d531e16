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
  (the identity names are in lico_tune/keys.py). An arm may not set `train.seed` when the search
  varies it (`check_seeds`).
* **Metrics.** Every search metric must be a key the spec's trials report (`check_metric_keys`,
  from the names in lico_tune/keys.py), or the search would optimise nothing.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..errors import SpecError, suggest
from ..keys import (CHANCE_KEYS, HEALTH_KEYS, MASK_AREA, SALIENCY_TAILS, SECONDS_TAIL, SEED_PATH, SHORTCUT_KEYS,
                    SHORTCUT_RENAMED, TRAIN_KEYS, accuracy_key, repeat_seed)
from ..spec.limits import SEED_MAX

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


def check_seeds(spec: "Spec", resolved: list) -> None:
    """An arm may not set train.seed when the search varies it (a train.seed axis or repeats): the
    arm would win and its cells would all train one seed while the results call them several. Every
    repeat's seed (seed + i) must fit SEED_MAX. `resolved`: the TrialConfig of every cell."""
    s = spec.search
    varied = SEED_PATH in s.space or s.repeats > 1
    for arm, sets in (spec.ablation or {}).items():
        if varied and SEED_PATH in sets:
            how = f"search.space.{SEED_PATH}" if SEED_PATH in s.space else f"search.repeats {s.repeats}"
            raise SpecError(f"ablation.{arm}.{SEED_PATH}: arm '{arm}' sets the seed, which {how} varies; the arm "
                            f"would win, so its cells would all train seed {sets[SEED_PATH]} while the results count "
                            f"them as different seeds. Remove {SEED_PATH} from the arm (vary seeds with the search "
                            f"only), or run that arm as its own experiment.")
    top = max((cfg.train.seed for cfg in resolved), default=0)
    if repeat_seed(top, s.repeats - 1) > SEED_MAX:
        raise SpecError(f"{SEED_PATH} {top} with search.repeats {s.repeats}: the last repeat would train seed "
                        f"{repeat_seed(top, s.repeats - 1)}, beyond {SEED_MAX} (a signed 64-bit integer, what torch's "
                        f"seeding and the results tables hold). Use a smaller seed.")


def reportable_keys(cfg) -> list[str]:
    """The metric keys a trial with config `cfg` (a TrialConfig) can report, from lico_tune/keys.py:
    its training and health keys, accuracies, and each method's saliency keys (on test images, and
    val/saliency/* on validation images; every tail of the metrics table, whichever pointing game
    the dataset's boxes choose). val/* is listed whatever data.val_fraction says: check_selection
    names that problem."""
    keys = [*TRAIN_KEYS, *HEALTH_KEYS, *CHANCE_KEYS]
    emas = (False, True) if cfg.train.ema is not None else (False,)
    keys += [accuracy_key(split, ema) for split in ("test", "val") for ema in emas]
    methods = list(cfg.eval.cams) if cfg.eval.n_images else []
    tails = [t for group in SALIENCY_TAILS.values() for t in group] + [SECONDS_TAIL]
    keys += [f"{pre}saliency/{m}/{t}" for pre in ("", "val/") for m in methods for t in tails]
    keys += [MASK_AREA] if methods else []
    if cfg.data.shortcut.active:
        keys += [*SHORTCUT_KEYS, *(f"saliency/{m}/{t}" for m in methods for t in SHORTCUT_RENAMED.values())]
    return keys


def check_metric_keys(spec: "Spec", resolved: list) -> None:
    """Every search metric must be a key that the trials of this spec report: otherwise the searcher
    and the scheduler optimise nothing (Ray skips results without the metric) and the 'best
    configuration' is arbitrary. `resolved`: the TrialConfig of every cell."""
    known = list(dict.fromkeys(k for cfg in resolved for k in reportable_keys(cfg)))
    for metric in spec.search.metrics:
        if metric in known:
            continue
        if not metric.strip():
            raise SpecError("search.metrics names an empty metric (''); name a metric the trials report, "
                            "e.g. {val/acc: max}.")
        raise SpecError(f"search.metrics.{metric}: no trial of this spec reports '{metric}'{suggest(metric, known) or '.'} "
                        f"A search on it would optimise nothing. Name a reported metric, e.g. val/acc, "
                        f"val/saliency/<method>/overall (a method of base.eval.cams), test/acc.")
