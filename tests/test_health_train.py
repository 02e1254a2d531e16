"""Health checks on real data (issue 9): Fashion-MNIST, the tiny CNN and MiniLM, a few hundred
steps. The default LICO must move the image manifold towards the text one (MM at the reference
temperature, against the untrained text features, falls) with both MM and OT reaching the
backbone; this project's first default (one learnable exp tau shared by both softmaxes,
unbounded) must be flagged "MM inactive"."""
import copy
import json
from pathlib import Path

import pytest

from lico_tune.health import SHARE_FLOOR
from lico_tune.spec import validate_trial
from lico_tune.train import train_trial

FMNIST = Path("/usr/share/datasets/fashion-mnist")

TRIAL = {
    "data": {"name": "fashion_mnist", "augment": False, "train_subset": 1920, "test_subset": 200},
    "model": {"backbone": "tiny_cnn"},
    "text": {"encoder": "hf", "model": "minilm", "n_ctx": 4, "features": "per_token"},
    "lico": {"alpha": 10.0, "beta": 1.0},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.1, "steps_per_epoch": 30, "seed": 0, "ema": None,
              "log_every": 1000, "threads": 1},
    "eval": {"n_images": 0, "gallery_images": 0, "ses": False},
}

pytestmark = pytest.mark.skipif(not FMNIST.is_dir(), reason="needs the Debian package dataset-fashion-mnist")


def _run(tmp_path, name, **mm):
    tree = copy.deepcopy(TRIAL)
    tree["lico"]["mm"] = mm
    logs = []
    final = train_trial(validate_trial(tree), tmp_path / name, log=logs.append)
    return final, logs


def test_default_lico_moves_the_image_side_with_both_terms(tmp_path):
    final, logs = _run(tmp_path, "default")
    hist = final["history"]
    # MM at the reference temperature, against the untrained text, fell below the untrained value
    assert final["health/mm_ref"] < 0.9 * final["health/mm_ref0"]
    # Floor 1% (SHARE_FLOOR): a term whose gradient is a hundredth of the total at the backbone is,
    # at these weights, noise next to CE; measured here: MM ~70%, OT ~4-10%.
    for h in hist:
        assert h["health/grad_share/mm"] > SHARE_FLOOR and h["health/grad_share/ot"] > SHARE_FLOOR
        assert h["health/grad_share/ce"] + h["health/grad_share/mm"] + h["health/grad_share/ot"] == \
            pytest.approx(1.0, abs=1e-5)
    # tau cannot run away: it stays inside its bounds, near the target's
    assert all(0.03 <= h["health/tau"] <= 3.0 for h in hist)
    assert final["health/text_cos"] < 0.99 and final["health/sinkhorn_iters"] >= 1
    assert final["health/marginal_err"] < 1e-3
    assert final["warnings"] == [] and final["health/warn/mm_inactive"] == 0.0, logs
    assert any(line.startswith("health: tau") for line in logs)
    written = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert written["warnings"] == [] and "health/mm_ref" in written


def test_old_default_shared_unbounded_tau_is_flagged_mm_inactive(tmp_path):
    final, logs = _run(tmp_path, "old", temperature_form="exp", temperature=1.0, temperature_min=None,
                       temperature_max=None, target_temperature=None, text_gradient=True, distance="squared")
    taus = [h["health/tau"] for h in final["history"]]
    assert taus[-1] > taus[0] > 1.0  # the shared tau runs away
    flagged = [w for w in final["warnings"] if w.startswith("MM inactive")]
    assert flagged and final["health/warn/mm_inactive"] == 1.0, (final["warnings"], logs)
    assert sum(line.startswith("WARNING MM inactive") for line in logs) == 1  # once
    written = json.loads((tmp_path / "old" / "metrics.json").read_text())
    assert written["warnings"] == final["warnings"]


def test_no_gradient_ot_is_flagged_ot_inactive(tmp_path):
    """The released code's no_grad OT prints a loss but trains nothing: the trial must say so."""
    tree = copy.deepcopy(TRIAL)
    tree["lico"]["ot"] = {"gradient": "none"}
    tree["train"].update(epochs=1, steps_per_epoch=10)
    logs = []
    final = train_trial(validate_trial(tree), tmp_path / "nograd", log=logs.append)
    assert final["train/ot"] > 0 and final["health/grad_share/ot"] == 0.0
    flagged = [w for w in final["warnings"] if w.startswith("OT inactive")]
    assert flagged and "no-gradient OT" in flagged[0] and final["health/warn/ot_inactive"] == 1.0, logs
