import copy
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# A trial on sklearn digits with the tiny CNN and MiniLM: seconds on a CPU.
TINY_TRIAL = {
    "data": {"name": "digits", "val_fraction": 0.2},   # a validation split: searches select on val/acc
    "model": {"backbone": "tiny_cnn"},
    "text": {"encoder": "hf", "model": "minilm", "n_ctx": 4, "features": "eot"},
    "lico": {"alpha": 1.0, "beta": 1.0},
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "steps_per_epoch": 4, "seed": 0,
              "ema": 0.9, "log_every": 2},
    "eval": {"batch_size": 512, "n_images": 16, "gallery_images": 2},
}


@pytest.fixture
def tiny_trial_tree():
    return copy.deepcopy(TINY_TRIAL)
