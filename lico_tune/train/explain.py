"""`lico-tune explain`: a trained classifier from a checkpoint, images to explain, a figure."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data import build_data
from ..errors import UnreadableInput
from ..models import build_classifier
from ..saliency.evaluate import Protocol
from ..saliency.gallery import write_gallery
from ..saliency.trial import fixed_test_images
from ..spec import saved_trial, validate_trial
from .checkpoint import CheckpointError, load_checkpoint


def load_classifier(checkpoint: str | Path, weights: str = "ema"):
    """(classifier in eval mode, trial config, data bundle) from a checkpoint file or run dir.
    weights: 'ema' (when the checkpoint has EMA weights) or 'raw'."""
    state = load_checkpoint(checkpoint)
    cfg = validate_trial(saved_trial(state["config"]), source=f"the spec saved in {checkpoint}")
    data = build_data(cfg.data, seed=cfg.train.seed)
    classifier = build_classifier(cfg.model, data.num_classes, data.in_channels)
    if weights == "ema" and state.get("ema") is not None:
        prefix, source = "module.", state["ema"]
    else:
        prefix, source = "classifier.", state["model"]
    own = {k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)}
    try:
        classifier.load_state_dict(own)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: the classifier weights do not fit the saved spec "
                              f"({str(exc).splitlines()[0]}).") from None
    return classifier.eval(), cfg, data


def load_image_files(paths: Sequence[str | Path], data) -> torch.Tensor:
    """Image files -> (N, C, H, W) normalised like the trial's data (channels and size matched)."""
    from PIL import Image, UnidentifiedImageError

    mode = "L" if data.in_channels == 1 else "RGB"
    out = []
    for path in paths:
        try:
            img = Image.open(path).convert(mode).resize((data.image_size, data.image_size), Image.BILINEAR)
        except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
            raise UnreadableInput(f"Cannot read image {path}: {exc}. Pass PNG or JPEG files.") from None
        arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
        arr = arr[None] if arr.ndim == 2 else arr.permute(2, 0, 1)  # (C, H, W)
        out.append(arr)
    x = torch.stack(out)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return (x - mean) / std


def explain(checkpoint: str | Path, images: Sequence[str | Path] = (), methods: Sequence[str] = ("gradcam",),
            out: str | Path = "explain.png", n_images: int = 6, weights: str = "ema") -> Path:
    """Write a figure (image, overlay with colour bar, insertion/deletion curves per image) to `out`;
    overlays and curve data go to `<out stem>_files/`. Without image files, the trial's fixed
    test images are explained (labels known); with files, the predicted class is explained."""
    classifier, cfg, data = load_classifier(checkpoint, weights)
    if images:
        x = load_image_files(images, data)
        with torch.no_grad():
            y = classifier(x).argmax(1)
    else:
        x, y = fixed_test_images(data.test, n_images, cfg.eval.seed)
    out = Path(out)
    files = out.with_name(out.stem + "_files")
    write_gallery(classifier, x, y, str(files), list(methods), Protocol.of(cfg.eval), class_names=data.class_names,
                  mean=data.mean, std=data.std)     # the trial's own protocol (its eval.target included)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files / "explain.png", out)
    return out
