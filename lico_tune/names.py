"""The name lists of the spec's choices, written once: the spec types are built from them
(lico_tune/spec/trial.py) and each registry checks that it implements exactly these
(tests/top/test_names.py). Imports nothing, so that every layer can read it. The dataset list is
data/'s own (lico_tune/data/names.py: DATASETS, beside each dataset's class names)."""
from __future__ import annotations

BACKBONES = ("tiny_cnn", "wrn28_2", "wrn28_8", "resnet18_cifar", "resnet50")
CAM_METHODS = ("gradcam", "gradcampp", "scorecam", "layercam")  # pytorch-grad-cam's
SALIENCY_METHODS = CAM_METHODS + ("rise",)

__all__ = ["BACKBONES", "CAM_METHODS", "SALIENCY_METHODS"]
