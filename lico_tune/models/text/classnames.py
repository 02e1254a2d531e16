"""Which name each class's prompts carry (text.class_names): the dataset's names in label order, or
a seeded derangement of them (the same words, every class given another class's name)."""
from __future__ import annotations

import numpy as np

from ...errors import SpecError
from ...spec import TextConfig


def derangement(k: int, seed: int) -> list[int]:
    """A permutation p of range(k) with p[i] != i for every i, drawn uniformly (rejection) from `seed`."""
    if k < 2:
        raise SpecError(f"text.class_names: 'deranged' needs at least 2 classes (this dataset has {k}); "
                        f"use 'dataset'")
    rng = np.random.default_rng(seed)
    while True:  # about e tries on average, whatever k
        p = rng.permutation(k)
        if not np.any(p == np.arange(k)):
            return [int(i) for i in p]


def prompt_class_names(cfg: TextConfig, names: list[str]) -> list[str]:
    """The name of each label's prompts: names[i], or names[p[i]] under the seeded derangement p."""
    if cfg.class_names == "dataset":
        return list(names)
    return [names[j] for j in derangement(len(names), cfg.class_names_seed)]
