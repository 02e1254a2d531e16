"""Saliency inside a trial (metrics + gallery) and `lico-tune explain` on a real checkpoint."""
import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_TRIAL
from lico_tune.cli import main
from lico_tune.train.explain import load_classifier
from lico_tune.saliency.trial import fixed_test_images
from lico_tune.spec import validate_trial
from lico_tune.train import train_trial


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tree = copy.deepcopy(TINY_TRIAL)
    tree["train"].update(epochs=1, steps_per_epoch=6)
    tree["eval"].update(cams=["gradcam", "layercam"], n_images=24, gallery_images=3)
    out = tmp_path_factory.mktemp("run")
    final = train_trial(validate_trial(tree), out)
    return out, final


def test_trial_reports_saliency_metrics_and_writes_gallery(trained_run):
    out, final = trained_run
    for method in ("gradcam", "layercam"):
        for metric in ("insertion", "deletion", "overall", "pointing", "energy", "ses"):
            value = final[f"saliency/{method}/{metric}"]
            assert np.isfinite(value), (method, metric)
        assert final[f"saliency/{method}/overall"] == pytest.approx(
            final[f"saliency/{method}/insertion"] - final[f"saliency/{method}/deletion"], abs=1e-6)
        assert len(list((out / "gallery" / method).glob("*.png"))) == 3
    curves = json.loads((out / "gallery" / "curves.json").read_text())
    assert len(curves["images"]) == 3 and curves["images"][0]["label_name"] in [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_fixed_images_are_the_same_for_every_trial(trained_run):
    out, _ = trained_run
    model, cfg, data = load_classifier(out)
    x1, y1 = fixed_test_images(data.test, 10, seed=0)
    x2, y2 = fixed_test_images(data.test, 10, seed=0)
    x3, _ = fixed_test_images(data.test, 10, seed=1)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)


def test_loaded_classifier_reproduces_trial_accuracy(trained_run):
    out, final = trained_run
    from lico_tune.train import evaluate
    for weights, key in (("ema", "test/acc_ema"), ("raw", "test/acc")):
        model, cfg, data = load_classifier(out, weights)
        assert evaluate(model, data.test, torch.device("cpu"), 512) == pytest.approx(final[key])


def test_explain_cli_writes_a_figure(trained_run, tmp_path, capsys):
    out, _ = trained_run
    fig = tmp_path / "fig.png"
    assert main(["explain", str(out), "--method", "gradcam", "--method", "rise", "-n", "3", "-o", str(fig)]) == 0
    img = np.asarray(Image.open(fig))
    assert img.shape[0] > 300 and img.shape[1] > 300 and img.std() > 10  # not blank
    # image files given: their predicted class is explained
    Image.fromarray((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    assert main(["explain", str(out / "checkpoint.pt"), str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").exists() and (tmp_path / "b_files" / "gradcam" / "000.png").exists()
    assert main(["explain", str(tmp_path / "missing")]) == 2
    assert "No checkpoint" in capsys.readouterr().err
