"""The names in a trial's record, written once: the trainer writes them, the planner, the Ray side,
the results and the dashboard read them. Imports nothing, so that every layer can.

* Identity. Repeat i of a configuration (Ray's `__trial_index__`) trains with `train.seed = s + i`,
  s the seed the configuration resolves to; the seeds of one configuration share a `config_id`.
* Metric keys: the chance check's (train/chance.py) and the LICO terms' health (train/health.py).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Iterable, Union

# ----------------------------------------------------------------------------- identity
TRIAL_INDEX = "__trial_index__"               # = ray.tune.search.repeater.TRIAL_INDEX
SEED_PATH = "train.seed"
SEED_COLUMNS = ("seed", SEED_PATH, TRIAL_INDEX)  # the results table's seed, the field, Ray's repeat index


def repeat_seed(seed: int, index: int) -> int:
    """The seed of repeat `index` (0-based) of a configuration whose own seed is `seed`."""
    return int(seed) + int(index)


def is_seed(name: str) -> bool:
    """Whether a parameter or column is a trial's seed (noise, never a hyperparameter): the one rule
    the configuration id, the best-configuration table and the dashboard use."""
    return name in SEED_COLUMNS


DATASET_PATH = "data.name"


def is_hyperparameter(name: str) -> bool:
    """Whether a searched parameter is a choice to tune: not a seed (noise), and not the dataset
    (accuracies of different datasets are not on one scale, so nothing ranks across them). The one
    rule of the best-configuration table, the importances and the dashboard."""
    return not is_seed(name) and name != DATASET_PATH


def config_id(params: dict) -> str:
    """The id shared by the seeds of one configuration: a hash of the trial's params (arm, grid
    and sampled values) without the repeat index and the seed. 10 hex digits."""
    key = {k: v for k, v in params.items() if not is_seed(k)}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- the chance check
CHANCE_ALPHA = 0.01      # one-sided level of the binomial test behind AT_CHANCE_FLAG
TOP_PRED_SHARE = "eval/top_pred_share"
CHANCE_P = "eval/chance_p"
AT_CHANCE_FLAG = "health/warn/at_chance"
COLLAPSED_FLAG = "health/warn/collapsed"
CHANCE_KEYS = (TOP_PRED_SHARE, CHANCE_P, AT_CHANCE_FLAG, COLLAPSED_FLAG)  # flags as 0/1: the table counts k/n
CHANCE_KINDS = ("at chance", "collapsed")   # the chance check's warning kinds (HealthWarning.kind)

# ----------------------------------------------------------------------------- LICO health
TERMS = ("ce", "mm", "ot")
HEALTH_PREFIX = "health/"                     # every health metric's key starts so


def is_health(key: str) -> bool:
    """Whether a metric describes the LICO terms' health (never a result to rank configurations by)."""
    return key.startswith(HEALTH_PREFIX)


HEALTH_WARNINGS = "health/warnings"          # a trial's health warnings as text, joined by "; "
# The LICO terms' warning kinds (train/health_rules.py), each with its flag warn_flag(kind).
WARNING_KINDS = ("MM inactive", "OT inactive", "OT degenerate", "OT collapsed", "OT not converged")
WARN_PREFIX = "health/warn/"                  # + a warning kind: its 0/1 flag
TAU, TAU_TARGET = "health/tau", "health/tau_target"
MM_REF, MM_REF0, MM_REF_CHANGE = "health/mm_ref", "health/mm_ref0", "health/mm_ref_change"
TEXT_COS, TEXT_COS_PROJ, CLASS_TEXT_COS = "health/text_cos", "health/text_cos_proj", "health/class_text_cos"
TEXT_COS_BETWEEN, TEXT_COS_BETWEEN0 = "health/text_cos_between", "health/text_cos_between0"
TEXT_COS_IMAGE = "health/text_cos_image"
MARGINAL_ERR, SINKHORN_ITERS = "health/marginal_err", "health/sinkhorn_iters"


@dataclass(frozen=True)
class HealthWarning:
    """One warning of a trial's health (train/health_rules.py, train/chance.py): its kind ('OT
    collapsed', 'at chance'...) and what was measured. Written as text only at the edge: the
    `health/warnings` metric and metrics.json (`str`: 'kind: detail'), read back by
    `read_health_warnings`."""
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def health_text(warnings: Iterable[HealthWarning]) -> str:
    """The `health/warnings` metric: the warnings' text joined by '; '."""
    return "; ".join(map(str, warnings))


# '; ' followed by a known kind starts the next warning (a detail may hold '; ': 'OT collapsed' did)
_NEXT_WARNING = re.compile("; (?=(?:%s): )" % "|".join(map(re.escape, WARNING_KINDS + CHANCE_KINDS)))


def read_health_warnings(text: Union[str, Iterable[str], None]) -> list[HealthWarning]:
    """The one reader of the text form: a `health/warnings` text ('; '-joined) or a list of texts
    (metrics.json, the catalog, result.json files written before these were values), each
    'kind: detail', into values, each once. Anything else (NaN, None) reads as no warning."""
    if isinstance(text, str):
        texts = _NEXT_WARNING.split(text)
    else:
        texts = [t for t in text if isinstance(t, str)] if isinstance(text, (list, tuple)) else []
    out: list[HealthWarning] = []
    for t in texts:
        kind, _, detail = t.partition(": ")
        w = HealthWarning(kind, detail)
        if t and w not in out:
            out.append(w)
    return out


def grad_frac(term: str) -> str:
    """The term's share of the squared gradient norm at the feature map."""
    return f"health/grad_frac/{term}"


def dose(term: str, untrained: bool = False) -> str:
    """|grad term| / |grad CE| at the feature map (averaged over the probes, or at step 0)."""
    return f"health/dose{'0' if untrained else ''}/{term}"


def warn_flag(kind: str) -> str:
    """The 0/1 metric of a warning kind: 'OT collapsed' -> 'health/warn/ot_collapsed'."""
    return WARN_PREFIX + kind.lower().replace(" ", "_")


def old_grad_share(term: str) -> str:
    """Experiments trained before fidelity v2: a ratio of norms, averaged with the untrained model."""
    return f"health/grad_share/{term}"


# What the dashboard's trial page charts, by group; every numeric health key a trial reports is here
# (tests/train/test_health_train.py checks it against a trained trial).
HEALTH_GROUPS = {
    "Temperature": (TAU, TAU_TARGET),
    "MM at the reference temperature": (MM_REF, MM_REF0, MM_REF_CHANGE),
    "Fraction of the squared gradient norm at the features": tuple(grad_frac(t) for t in TERMS),
    "Dose: |grad term| / |grad CE| at the features (0: the untrained model's)": (
        dose("mm"), dose("ot"), dose("mm", True), dose("ot", True)),
    "Text points (mean cosine)": (TEXT_COS, TEXT_COS_PROJ, CLASS_TEXT_COS),
    "OT's text points: between classes, to the images": (TEXT_COS_BETWEEN, TEXT_COS_BETWEEN0, TEXT_COS_IMAGE),
    "Sinkhorn final marginal error": (MARGINAL_ERR,),
    "Sinkhorn iterations": (SINKHORN_ITERS,),
}
HEALTH_KEYS = tuple(k for keys in HEALTH_GROUPS.values() for k in keys)
OLD_HEALTH_GROUPS = {"Share of the gradient norm (older runs)": tuple(old_grad_share(t) for t in TERMS)}

# ----------------------------------------------------------------------------- accuracy, training, saliency
TRAIN_KEYS = ("epoch", "step", "lr", "train/loss", *(f"train/{t}" for t in TERMS), "train/images_per_s")
ACCURACY_RANGE = (0.0, 100.0)                 # every accuracy is top-1 in percent (train/parts.py accuracy)


def accuracy_key(split: str, ema: bool = False) -> str:
    """'test/acc', 'val/acc_ema': the split's top-1 accuracy (%) of the raw or the EMA weights."""
    return f"{split}/acc{'_ema' if ema else ''}"


# The shortcut probe (saliency/shortcut.py): accuracies on clean, patched and shuffled test images,
# their difference, the patch's area share, and the saliency metrics on patched images, renamed.
SHORTCUT_ACCURACIES = tuple(f"shortcut/acc_{k}" for k in ("clean", "patched", "shuffled"))
SHORTCUT_KEYS = (*SHORTCUT_ACCURACIES, "shortcut/patch_reliance", "shortcut/patch_area")
SHORTCUT_RENAMED = {"insertion": "patched_insertion", "deletion": "patched_deletion", "overall": "patched_overall",
                    "pointing_mask": "patch_pointing", "energy_mask": "patch_energy"}


# Per-test-image correctness (metrics.json, TEST_CORRECT: {accuracy key: {"n": images, "bits": base64 of
# numpy.packbits(correct)}}; 10,000 images -> 1,250 bytes), so that a report can resample test images as
# well as seeds (results/resolution.py). The bits reproduce the accuracy: 100 * bits.sum() / n.
TEST_CORRECT = "test_correct"


def pack_correct(correct) -> dict:
    """Per-image correctness (n,) bool (a numpy array) -> {"n", "bits"}."""
    import numpy as np
    bits = np.asarray(correct, dtype=bool)
    return {"n": int(bits.size), "bits": base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")}


def unpack_correct(record: dict):
    """{"n", "bits"} -> correct (n,) bool; ValueError when the record does not hold n bits."""
    import numpy as np
    n = int(record["n"])
    raw = np.frombuffer(base64.b64decode(record["bits"], validate=True), dtype=np.uint8)
    if n < 0 or raw.size != (n + 7) // 8:
        raise ValueError(f"{raw.size} bytes cannot hold {n} correctness bits")
    return np.unpackbits(raw, count=n).astype(bool)


def is_accuracy(key: str) -> bool:
    """Whether a metric is an accuracy in percent (ACCURACY_RANGE)."""
    return key in SHORTCUT_ACCURACIES or key.rpartition("/")[2] in ("acc", "acc_ema")


# The saliency metrics' key tails (saliency/<method>/<tail>, and val/saliency/... on validation
# images), by the entry of saliency/evaluate.py's METRICS table that writes them (the table says
# when each runs and how it is computed); every method also reports its wall time (SECONDS_TAIL).
SALIENCY_TAILS = {
    "morf": ("insertion", "deletion", "overall"),
    "lerf": ("insertion_lerf", "deletion_lerf", "lerf_morf"),
    "road": ("road_morf", "road_lerf", "road_combined"),
    "grid": ("pointing", "energy"),
    "masks": ("pointing_mask", "energy_mask"),
    "ses": ("ses",),
    "sanity": ("sanity_top", "sanity_full"),
    "smprt": ("smprt_top", "smprt_full"),
    "emprt": ("emprt",),
}
SECONDS_TAIL = "seconds"
MASK_AREA = "eval/mask_area"                  # the masks' mean area share (the mask pointing game's chance)
