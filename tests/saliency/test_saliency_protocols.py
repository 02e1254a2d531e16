"""The protocol options the critics ask for, on tiny models: pointing game on real boxes, LeRF,
ROAD (against pytorch-grad-cam), smooth/efficient MPRT, the shortcut-probe metrics and the trial
metrics they produce (CPU, seconds)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lico_tune.saliency as S
from lico_tune.data import paths, shortcut
from lico_tune.data.imageset import ImageSet
from lico_tune.saliency.faithfulness import insertion_deletion, insertion_deletion_reference
from lico_tune.saliency.mprt import efficient_mprt, histogram_entropy, smooth_mprt
from lico_tune.saliency.road import impute, road
from lico_tune.saliency.evaluate import Protocol
from lico_tune.saliency.shortcut import shortcut_metrics
from lico_tune.spec import EvalConfig

import conftest


pytestmark = pytest.mark.usefixtures("one_thread")


def _cnn(c_in: int = 1, k: int = 4, width: int = 6) -> nn.Module:
    """The plain two-conv TinyCNN (no batch norm, no stride), single-channel by default."""
    return conftest.TinyCNN(c_in, k, width, plain=True)


# ----------------------------------------------------------------------------- boxes


def test_pointing_game_on_boxes_oracle_one_random_about_the_area():
    g = torch.Generator().manual_seed(0)
    n, size = 3000, 32
    x0, y0 = torch.randint(0, 20, (2, n), generator=g)
    w, h = torch.randint(4, 12, (2, n), generator=g)
    boxes = torch.stack([x0, y0, x0 + w, y0 + h], 1)
    masks = S.boxes_to_masks(boxes, size, size)
    area = masks.flatten(1).float().mean(1)                                 # (n,) each box's area share
    assert torch.allclose(area, (w * h).float() / size ** 2)
    oracle = masks.float() + 0.3 * torch.rand(n, size, size, generator=g)   # maximum always inside
    assert S.pointing_game_masks(oracle, masks).mean() == 1.0
    rand = torch.rand(n, size, size, generator=g)
    hits = S.pointing_game_masks(rand, masks)
    se = math.sqrt(float((area * (1 - area)).mean()) / n)
    assert abs(hits.mean().item() - area.mean().item()) < 4 * se             # chance = the box's area
    assert abs(S.energy_masks(rand, masks).mean().item() - area.mean().item()) < 0.01


# ----------------------------------------------------------------------------- LeRF


def test_lerf_batched_equals_reference_and_reverses_morf():
    torch.manual_seed(0)
    model = _cnn().eval()
    x, sal, y = torch.randn(3, 1, 10, 10), torch.rand(3, 10, 10), torch.tensor([0, 1, 3])
    kw = dict(pixels_per_step=7)
    fast = insertion_deletion(model, x, sal, y, batch_size=11, order="lerf", **kw)
    ref = insertion_deletion_reference(model, x, sal, y, order="lerf", **kw)
    for k in ("insertion_curve", "deletion_curve"):
        assert torch.allclose(fast[k], ref[k], atol=1e-5)
    # least relevant first on a map == most relevant first on the negated map (no ties here)
    flipped = insertion_deletion(model, x, -sal, y, batch_size=11, **kw)
    assert torch.allclose(fast["deletion"], flipped["deletion"], atol=1e-6)
    with pytest.raises(ValueError, match="unknown order"):
        insertion_deletion(model, x, sal, y, order="random")


def test_lerf_hand_worked_region_model():
    """p(class 1) = sigmoid(12 * (mean of a 4x4 square - 0.5)). With the square as the map,
    MoRF deletion zeroes the square at once (p = sigmoid(-6)) while LeRF deletion keeps it until
    the last 16 pixels: on 8 x 8 images, 16 px per step, the LeRF curve is flat for 3 of 4 steps."""
    class Region(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("m", torch.zeros(1, 1, 8, 8))
            self.m[..., 2:6, 2:6] = 1

        def forward(self, x):
            z = 12 * ((x * self.m).sum((1, 2, 3)) / 16 - 0.5)
            return torch.stack([torch.zeros_like(z), z], 1)

    model = Region()
    x = torch.ones(1, 1, 8, 8)
    sal = model.m[0, 0].clone()[None] + 0.01 * torch.arange(64.).view(1, 8, 8) / 64   # square first
    morf = insertion_deletion(model, x, sal, [1], pixels_per_step=16, modes=("deletion",))
    lerf = insertion_deletion(model, x, sal, [1], pixels_per_step=16, modes=("deletion",), order="lerf")
    hi, lo = torch.sigmoid(torch.tensor(6.0)).item(), torch.sigmoid(torch.tensor(-6.0)).item()
    assert torch.allclose(morf["deletion_curve"][0], torch.tensor([hi, lo, lo, lo, lo]), atol=1e-6)
    assert torch.allclose(lerf["deletion_curve"][0], torch.tensor([hi, hi, hi, hi, lo]), atol=1e-6)
    # trapezoid over x = 0, .25, ..., 1: 0.25 * (hi/2 + hi + hi + hi + lo/2)
    assert lerf["deletion"].item() == pytest.approx(0.25 * (3.5 * hi + 0.5 * lo), abs=1e-6)
    assert morf["deletion"].item() == pytest.approx(0.25 * (0.5 * hi + 3.5 * lo), abs=1e-6)


# ----------------------------------------------------------------------------- ROAD


def test_imputation_matches_pytorch_grad_cam_and_is_exact_on_a_ramp():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(3, 3, 9, 7, generator=g)
    keep = torch.rand(3, 9, 7, generator=g) > 0.4
    ours = impute(imgs, keep, noise=0.0)
    for i in range(3):
        ref = NoisyLinearImputer(noise=0.0)(imgs[i], keep[i].float())
        assert torch.allclose(ours[i], ref, atol=1e-5)
    assert torch.equal(ours[keep[:, None].expand_as(ours)], imgs[keep[:, None].expand_as(imgs)])
    # a linear ramp is reproduced exactly at interior holes (the stencil is symmetric)
    ramp = (torch.arange(8.)[:, None] * 0.3 + torch.arange(8.)[None] * 0.1).expand(1, 1, 8, 8)
    hole = torch.ones(1, 8, 8, dtype=torch.bool)
    hole[0, 2:6, 3:5] = False
    assert torch.allclose(impute(ramp, hole, noise=0.0), ramp, atol=1e-5)


def test_road_matches_pytorch_grad_cam_batched():
    from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                                  RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(0)
    model = _cnn(c_in=2, k=3).eval()
    x, maps, t = torch.randn(5, 2, 9, 11), torch.rand(5, 9, 11), torch.tensor([0, 1, 2, 0, 1])
    pct = (10, 50, 80)
    ours = road(model, x, maps, t, percentiles=pct, batch_size=4, noise=0.0)
    targets = [ClassifierOutputSoftmaxTarget(int(i)) for i in t]
    for name, cls in (("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)):
        for j, p in enumerate(pct):
            ref = PerturbationConfidenceMetric(cls(p, NoisyLinearImputer(noise=0.0)))(
                x, maps.numpy(), targets, model, return_diff=False)
            assert np.allclose(ref, ours[name][:, j].numpy(), atol=1e-5), (name, p)
    assert torch.allclose(ours["combined"], ((ours["lerf"] - ours["morf"]) / 2).mean(1))
    # pgc's ROADCombined (with its default noise 0.01) agrees to within the noise's effect
    torch.manual_seed(0)
    comb = ROADCombined(percentiles=list(pct))(x, maps.numpy(), targets, model)
    noisy = road(model, x, maps, t, percentiles=pct, batch_size=64, noise=0.01)
    assert np.allclose(comb, noisy["combined"].numpy(), atol=0.02)


# ----------------------------------------------------------------------------- MPRT variants


def test_smooth_mprt_reduces_to_cascading_and_falls():
    torch.manual_seed(0)
    model = _cnn().eval()
    x, y = torch.randn(6, 1, 12, 12), torch.tensor([0, 1, 2, 3, 0, 1])
    plain = S.cascading_randomisation(model, x, y, "gradcam", max_layers=2)
    same = smooth_mprt(model, x, y, "gradcam", n_samples=1, noise=0.0, max_layers=2)
    assert same["layers"] == plain["layers"]
    assert torch.allclose(same["spearman"], plain["spearman"], atol=1e-5)
    sm = smooth_mprt(model, x, y, "gradcam", n_samples=4, noise=0.1, seed=3)
    assert torch.allclose(sm["spearman"][0], torch.ones(6))                  # same noise, same model
    assert sm["mean"][-1] < 0.9                                               # randomised: maps change
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_efficient_mprt_entropy_hand_worked_and_ratio():
    assert histogram_entropy(torch.zeros(1, 4, 4)).item() == 0.0
    spread = torch.linspace(0, 1, 100).view(1, 10, 10) * 0.9999               # one value per bin
    assert histogram_entropy(spread).item() == pytest.approx(math.log(100), abs=1e-5)
    two = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    assert histogram_entropy(two, n_bins=10).item() == pytest.approx(math.log(2))
    torch.manual_seed(0)
    model = _cnn().eval()
    x, y = torch.randn(5, 1, 12, 12), torch.tensor([0, 1, 2, 3, 0])
    none = efficient_mprt(model, x, y, "gradcam", layers=[])                 # nothing randomised
    assert torch.allclose(none["ratio"][none["entropy_trained"] > 0], torch.tensor(1.0))
    full = efficient_mprt(model, x, y, "gradcam")
    assert full["ratio"].shape == (5,) and torch.isfinite(full["ratio"]).all()


# ----------------------------------------------------------------------------- shortcut probe


class PatchReader(nn.Module):
    """Reads only the patch slots: logit k = 10 * sum of F on slot k, F = x * (union of slots)."""

    def __init__(self, slots, size, hw):
        super().__init__()
        m = torch.zeros(len(slots), 1, hw, hw)
        for k, (t, l) in enumerate(slots.tolist()):
            m[k, 0, t:t + size, l:l + size] = 1
        self.register_buffer("slot", m)
        self.feat = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.feat.weight)

    @property
    def cam_layer(self):
        return self.feat

    def forward(self, x):
        f = self.feat(x * self.slot.amax(0, keepdim=True))                   # (B, 1, H, W)
        return 10 * (f * self.slot.transpose(0, 1)).sum((2, 3))              # (B, K)


def test_shortcut_metrics_on_a_patch_reading_model():
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    n, hw = 40, 20
    labels = torch.arange(n) % 4
    base = (torch.rand(n, 1, hw, hw, generator=g) * 40).to(torch.uint8)     # faint texture, no patch
    base[..., :6] = 0                         # ... away from the slot column (x 2..4): Grad-CAM weighs
    #                                           whole channels, so F must be zero off the patch
    train = ImageSet(base.clone(), labels, (0.0,), (1.0,), augment=False, pad=2)
    test = ImageSet(base.clone(), labels, (0.0,), (1.0,), augment=False, pad=2)
    cfg = SimpleNamespace(fraction=0.5, size=3, seed=0, value=255, region="left_half")
    train, probe = shortcut.build(train, test, cfg, 4, margin=2)
    model = PatchReader(probe.slots, 3, hw)
    out = shortcut_metrics(model, probe, torch.arange(8), ["gradcam"], Protocol.of(EvalConfig(batch_size=16, target="label")))
    assert out["shortcut/acc_patched"] == 100.0 and out["shortcut/acc_shuffled"] == 0.0
    assert out["shortcut/patch_reliance"] == 100.0
    clean_pred = model(probe.clean.batch(torch.arange(n))[0]).argmax(1)
    assert out["shortcut/acc_clean"] == pytest.approx(100.0 * (clean_pred == labels).float().mean().item())
    assert out["shortcut/patch_area"] == pytest.approx(9 / hw ** 2)
    assert out["saliency/gradcam/patch_energy"] == pytest.approx(1.0, abs=1e-6)
    assert out["saliency/gradcam/patch_pointing"] == 1.0
    # deleting the patch (the first 10 px step) kills the confidence at once: p goes from ~1 to
    # 1/4 (all logits 0) over the first of 40 steps, so AUC = (1 + 1/4) / 2 / 40 + 1/4 * 39/40
    assert out["saliency/gradcam/patched_deletion"] == pytest.approx(0.25 + 0.75 / 80, abs=1e-5)


# ----------------------------------------------------------------------------- trial metrics


FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(), reason="Fashion-MNIST not installed")
def test_trial_metrics_on_placed_with_boxes_road_lerf_mprt_and_shortcut(tmp_path, monkeypatch):
    from lico_tune.data import build_data
    from lico_tune.saliency.trial import saliency_metric_keys, trial_saliency
    from lico_tune.spec import DataConfig, EvalConfig

    monkeypatch.setattr(paths, "DATA_HOME", tmp_path / "data")
    data = build_data(DataConfig(name="placed_fmnist", placed={"max_items": 100, "canvas": 40},
                                 shortcut={"fraction": 0.5}), seed=0)
    torch.manual_seed(0)
    model = _cnn(k=10).eval()
    cfg = EvalConfig(cams=["gradcam"], n_images=6, ses=False, gallery_images=0, orderings=["morf", "lerf"],
                     road=True, road_percentiles=[30, 70], mprt=["smooth", "efficient"], mprt_samples=2,
                     sanity_max_layers=1, batch_size=32)
    m = trial_saliency(model, data, cfg, tmp_path)
    # The key list a trial pads its first report with is exactly what it later computes.
    assert sorted(saliency_metric_keys(cfg, data)) == sorted(m)
    for key in ("pointing_mask", "energy_mask", "insertion_lerf", "deletion_lerf", "lerf_morf", "road_morf",
                "road_lerf", "road_combined", "smprt_top", "smprt_full", "emprt", "patch_energy",
                "patched_deletion"):
        assert math.isfinite(m[f"saliency/gradcam/{key}"]), key
    assert "saliency/gradcam/pointing" not in m                              # boxes replace the grid game
    boxes = data.test.boxes[:6]
    assert 0 < m["eval/mask_area"] < 1
    for k in ("acc_clean", "acc_patched", "acc_shuffled", "patch_area"):
        assert math.isfinite(m[f"shortcut/{k}"])
    # eval.boxes off: the grid game is back
    m2 = trial_saliency(model, data, cfg.model_copy(update={"boxes": False, "road": False, "mprt": [],
                                                            "orderings": ["morf"]}), tmp_path)
    assert "saliency/gradcam/pointing" in m2 and "saliency/gradcam/pointing_mask" not in m2
    assert sorted(saliency_metric_keys(cfg.model_copy(update={"boxes": False, "road": False, "mprt": [],
                                                               "orderings": ["morf"]}), data)) == sorted(m2)
    assert boxes.shape == (6, 4)
