"""The spec's limits, one place each: upper bounds of its counts, the range of a seed, the length
and form of a name, and the strict-number rule. trial.py, search.py, document.py and checks.py
read them.

Each bound lies far beyond any real study, so it only catches typos (`num_samples: 1e9`, an extra
zero or three) before they become an experiment that never ends or a value that fails deep in
Ray, torch or a results table.
"""
from __future__ import annotations

import re
import typing
from typing import Any, Optional

# search.num_samples: samples per cell. The largest published sweeps of this method run tens of
# trials; 100,000 trials of one cell would take years on any cluster.
MAX_SAMPLES = 100_000
# search.repeats: seeds per configuration; studies use 3 to 30, 1,000 already costs 1,000 trainings.
MAX_REPEATS = 1_000
# train.epochs: the released code's recipe trains 200; 100,000 is 500 times that.
MAX_EPOCHS = 100_000
# Steps: train.steps_per_epoch, train.fail_at_step, lico.ot.max_iter (Sinkhorn; the HEAD uses 100).
MAX_STEPS = 10_000_000
# Images: eval.n_images, eval.gallery_images, batch sizes, RISE masks. The largest test split a
# dataset here has is ~26,000 images (SVHN); ImageNet's validation split has 50,000.
MAX_IMAGES = 1_000_000
# Seeds: torch.manual_seed / Generator.manual_seed (train.seed seeds the model and the data subsets;
# data.val_seed, eval.seed, the shortcut's and placed_fmnist's seeds their draws) refuse values
# outside [-2^63, 2^64): a 2^64 failed only at train time, with a traceback. Every results table
# (pandas, SQLite, Arrow) holds a seed as a signed 64-bit integer. So: the int64 range (>= 0 where
# numpy draws). Repeat i trains with seed + i, which the plan checks against the same bound
# (plan/selection.py check_seeds).
SEED_MIN, SEED_MAX = -(2 ** 63), 2 ** 63 - 1
# Names (the spec's name, arm names, --name) name directories: the experiment directory is the name
# plus a date suffix (`_2026-12-05_18-30-00`, 20 bytes), and file systems allow 255 bytes; trial
# directories add the arm and an id. 200 bytes leaves room for both.
MAX_NAME_BYTES = 200


_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def name_problem(name: str) -> Optional[str]:
    """Why `name` (the spec's name, an arm's, --name) cannot name a directory and a cell of the
    report's Markdown tables, or None when it can."""
    if not _NAME.fullmatch(name) or set(name) == {"."}:
        return ("use letters, digits and _ . + - only, and not '.' or '..' (no '/', '|', space or newline): it "
                "names a directory inside the results root and a cell of the report's tables")
    if len(name.encode()) > MAX_NAME_BYTES:
        return (f"{len(name.encode())} characters; use at most {MAX_NAME_BYTES} (the experiment directory adds "
                f"a date suffix, and file systems allow 255 bytes)")
    return None


def takes_numbers(annotation: Any) -> bool:
    """Whether a field's type holds numbers (int or float, also inside Optional, tuple, list)."""
    if annotation in (int, float):
        return True
    return any(takes_numbers(a) for a in typing.get_args(annotation) if a is not type(None))


def holds_booleans(value: Any) -> bool:
    """Whether a value is a boolean or a list/tuple holding one (cheap: checked before the field's type)."""
    return isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value))


# A number field given a boolean (YAML 1.1 reads yes/no/on/off/true/false as booleans, which
# pydantic would then read as 1 and 0) is refused with this message (StrictModel, trial.py).
BOOLEAN_NOT_NUMBER = ("write a number here: YAML reads yes/no/on/off/true/false as a boolean, which is not a "
                      "number (e.g. 1 or 0, or 10.0)")
