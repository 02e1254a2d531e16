"""Saliency methods and metrics on tiny hand-built or randomly initialised models (CPU, seconds)."""
from __future__ import annotations

import json
import math

import numpy as np

import pytest
import torch
from torch import nn

import lico_tune.saliency as S
from lico_tune.spec import EvalConfig
from lico_tune.saliency.cam import _cam_class
from lico_tune.saliency.equivariance import sample_crops

from conftest import TinyCNN


pytestmark = pytest.mark.usefixtures("one_thread")


class RegionModel(nn.Module):
    """2 classes; logit 1 = scale * (mean of the pixels in a known square - offset), logit 0 = 0.
    Only the square matters; F = x * mask (through a fixed 1x1 conv) is the CAM layer."""

    def __init__(self, size: int = 32, box=(8, 16, 12, 20), scale: float = 12.0, offset: float = 0.5):
        super().__init__()
        y0, y1, x0, x1 = box
        mask = torch.zeros(1, 1, size, size)
        mask[..., y0:y1, x0:x1] = 1
        self.register_buffer("mask", mask)
        self.feat = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.feat.weight)
        self.scale, self.offset = scale, offset

    @property
    def cam_layer(self) -> nn.Module:
        return self.feat

    def forward(self, x):
        f = self.feat(x * self.mask)  # (B, 1, H, W)
        region_mean = f.sum((1, 2, 3)) / self.mask.sum()
        logit = self.scale * (region_mean - self.offset)
        return torch.stack([torch.zeros_like(logit), logit], 1)


class ChannelClassModel(nn.Module):
    """K classes, K channels: logit k = mean of channel k (via an identity 1x1 conv, the CAM layer).
    An image of class c lights channel c, so the evidence for c is where channel c is lit."""

    def __init__(self, k: int = 4):
        super().__init__()
        self.feat = nn.Conv2d(k, k, 1, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.eye(k)[:, :, None, None])

    @property
    def cam_layer(self) -> nn.Module:
        return self.feat

    def forward(self, x):
        return 4.0 * self.feat(x).mean((2, 3))


def channel_class_images(n: int, k: int = 4, size: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % k
    x = 0.01 * torch.rand(n, k, size, size, generator=g)
    x[torch.arange(n), labels] += 1.0
    return x, labels


def region_images(n: int, size: int = 32, box=(8, 16, 12, 20), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = 0.5 * torch.randn(n, 1, size, size, generator=g)
    y0, y1, x0, x1 = box
    x[..., y0:y1, x0:x1] = 1.0 + 0.05 * torch.rand(n, 1, y1 - y0, x1 - x0, generator=g)
    return x


BOX = (8, 16, 12, 20)


# ----------------------------------------------------------------------------- methods


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("method", S.METHODS)
def test_method_shape_range_and_state(method, batch):
    torch.manual_seed(0)
    model = TinyCNN().train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    x, y = torch.randn(batch, 3, 16, 16), torch.arange(batch) % 5
    fn = S.make_saliency_fn(model, method, batch_size=2, rise_n_masks=40)
    maps = fn(x, y)
    assert maps.shape == (batch, 16, 16) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert (maps.flatten(1).max(1).values == 1).all()  # normalised per map (none constant here)
    # the model is left as found: train mode, trainable, its gradients untouched
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())


@pytest.mark.parametrize("backbone", ["tiny_cnn", "wrn28_2"])
def test_cams_on_the_project_backbones(backbone):
    from lico_tune.models import backbones as models
    from lico_tune.spec import ModelConfig

    torch.manual_seed(0)
    model = models.build_classifier(ModelConfig(backbone=backbone), 10, 3).train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 32, 32)
    for method in ("gradcam", "layercam"):
        maps = S.make_saliency_fn(model, method)(x, torch.tensor([1, 7]))
        assert maps.shape == (2, 32, 32) and 0 <= maps.min() and maps.max() <= 1
    assert model.training  # restored, and batch-norm statistics untouched (CAMs run in eval mode)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())


def test_gradcam_peaks_inside_the_region():
    model, x = RegionModel(box=BOX), region_images(4, box=BOX)
    maps = S.saliency_maps(model, model.cam_layer, x, torch.ones(4, dtype=torch.long), "gradcam")
    y0, y1, x0, x1 = BOX
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    for m in maps:
        r, c = divmod(int(m.argmax()), 32)
        assert inside[r, c]
        assert m[~inside].sum() < 0.05 * m[inside].sum()  # bilinear upsampling only; F is full-res


def test_batched_scorecam_equals_the_package_scorecam():
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(1)
    model = TinyCNN().eval()
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 3, 4])
    ours = S.saliency_maps(model, model.cam_layer, x, y, "scorecam", batch_size=5)
    cam = ScoreCAM(model=model, target_layers=[model.cam_layer])
    theirs = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in y]))
    cam.activations_and_grads.release()
    assert torch.allclose(ours, S.normalise_maps(theirs), atol=1e-5)
    assert _cam_class("scorecam").__mro__[1] is ScoreCAM


def test_rise_batched_equals_the_plain_sum_over_masks():
    torch.manual_seed(2)
    model = TinyCNN().eval()
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    ours = S.rise_maps(model, x, y, n_masks=30, cells=4, p=0.5, seed=3, batch_size=7)
    masks = S.rise_masks(16, 16, 30, 4, 0.5, 3)
    assert masks.shape == (30, 16, 16) and masks.min() >= 0 and masks.max() <= 1
    assert torch.equal(masks, S.rise_masks(16, 16, 30, 4, 0.5, 3))  # deterministic
    for i in range(2):
        sal = sum(torch.softmax(model(x[i:i + 1] * m), 1)[0, y[i]] * m for m in masks) / (30 * 0.5)
        assert torch.allclose(ours[i], S.normalise_maps(sal[None])[0], atol=1e-5)


# ----------------------------------------------------------------------------- faithfulness


class BatchRecorder(nn.Module):
    """Wraps a model and records the largest batch it saw."""

    def __init__(self, model):
        super().__init__()
        self.model, self.max_batch, self.calls = model, 0, 0

    def forward(self, x):
        self.max_batch, self.calls = max(self.max_batch, len(x)), self.calls + 1
        return self.model(x)


@pytest.mark.parametrize("target,substrates", [("label", ("blur", "zeros")), ("pred", ("blur", "zeros")),
                                               ("label", ("zeros", "blur")), ("label", ("blur", "blur")),
                                               ("label", ("zeros", "zeros"))])
def test_insertion_deletion_batched_equals_reference(target, substrates):
    torch.manual_seed(3)
    model = BatchRecorder(TinyCNN(k=4)).eval()
    x, labels = torch.randn(3, 3, 10, 10), torch.tensor([0, 1, 3])
    targets = labels if target == "label" else model(x).argmax(1)
    sal = torch.rand(3, 10, 10)
    sal[0, :6] = 0.5  # ties: the stable order must agree
    pps = 7  # 100 pixels: 14 steps of 7 and a last one of 2
    subs = dict(insertion_substrate=substrates[0], deletion_substrate=substrates[1])
    model.calls = 0
    batched = S.insertion_deletion(model, x, sal, targets, pixels_per_step=pps, batch_size=5, **subs)
    # memory bound: chunks of <= 5. Each image's 2 x 16 points less the repeated step images: the
    # clean image (insertion's last = deletion's first), and the substrate-only point of each mode
    # (zeros: one shared all-zeros forward; blur on both: deletion's last = insertion's first).
    n_zero_modes = substrates.count("zeros")
    per_image = 2 * 16 - 1 - (1 if substrates == ("blur", "blur") else n_zero_modes)
    assert model.max_batch <= 5
    assert model.calls == math.ceil(3 * per_image / 5) + (n_zero_modes > 0)
    ref = S.insertion_deletion_reference(model, x, sal, targets, pixels_per_step=pps, **subs)
    assert batched["n_steps"] == ref["n_steps"] == 15
    assert batched["insertion_curve"].shape == (3, 16)
    for k in ("insertion", "deletion", "overall", "insertion_curve", "deletion_curve"):
        assert torch.allclose(batched[k], ref[k], atol=1e-5, rtol=0), k
    # endpoints: deletion starts at the clean image, insertion ends at it
    clean = torch.softmax(model(x), 1)[torch.arange(3), targets]
    assert torch.allclose(batched["deletion_curve"][:, 0], clean, atol=1e-5)
    assert torch.allclose(batched["insertion_curve"][:, -1], clean, atol=1e-5)
    assert torch.allclose(batched["fraction"][-2:], torch.tensor([0.98, 1.0]))


def test_auc_is_the_normalised_trapezoid():
    assert S.auc(torch.ones(5)).item() == pytest.approx(1.0)
    assert S.auc(torch.tensor([0.0, 1.0])).item() == pytest.approx(0.5)
    assert S.auc(torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(0.25)


def test_oracle_map_beats_random_and_inverted():
    model, x = RegionModel(box=BOX), region_images(3, box=BOX, seed=1)
    y0, y1, x0, x1 = BOX
    oracle = torch.zeros(3, 32, 32)
    oracle[:, y0:y1, x0:x1] = 1.0
    scores = {name: S.insertion_deletion(model, x, sal, torch.ones(3, dtype=torch.long), 10, 128)
              for name, sal in {"oracle": oracle, "inverted": 1 - oracle,
                                "random": torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))}.items()}
    ins = {k: v["insertion"].mean().item() for k, v in scores.items()}
    dele = {k: v["deletion"].mean().item() for k, v in scores.items()}
    assert ins["oracle"] > ins["random"] + 0.2 and ins["oracle"] > ins["inverted"] + 0.2
    assert dele["oracle"] < dele["random"] - 0.2 and dele["oracle"] < dele["inverted"] - 0.2
    assert scores["oracle"]["overall"].mean() > 0.8


# ----------------------------------------------------------------------------- localisation


def test_make_grids_tiles_four_classes():
    n = 40
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, 3, 3).clone()
    labels = torch.arange(n) % 6
    grids, grid_labels = S.make_grids(images, labels, n_grids=25, seed=0)
    assert grids.shape == (25, 2, 6, 6) and grid_labels.shape == (25, 4)
    corners = [(0, 0), (0, 3), (3, 0), (3, 3)]
    for g in range(25):
        assert len(set(grid_labels[g].tolist())) == 4
        for t, (r, c) in enumerate(corners):
            src = int(grids[g, 0, r, c])
            assert (grids[g, :, r:r + 3, c:c + 3] == src).all() and labels[src] == grid_labels[g, t]
    again = S.make_grids(images, labels, n_grids=25, seed=0)
    assert torch.equal(again[0], grids) and torch.equal(again[1], grid_labels)
    with pytest.raises(ValueError, match=">= 4 classes"):
        S.make_grids(images, labels % 3, 2)


def test_pointing_game_oracle_random_and_constant():
    g = torch.Generator().manual_seed(0)
    n = 600
    tile = torch.randint(0, 4, (n,), generator=g)
    masks = S.tile_masks(16, 16)[tile]
    oracle = 0.5 * torch.rand(n, 16, 16, generator=g) + 0.5 * masks
    assert S.pointing_game(oracle, tile).mean() == 1.0
    assert S.energy_pointing_game(masks.float(), tile).mean() == pytest.approx(1.0)
    rand = torch.rand(n, 16, 16, generator=g)
    assert 0.2 < S.pointing_game(rand, tile).mean() < 0.3
    assert 0.23 < S.energy_pointing_game(rand, tile).mean() < 0.27
    flat = torch.zeros(n, 16, 16)  # no information: chance, not a free hit
    assert S.pointing_game(flat, tile).mean() == pytest.approx(0.25)
    assert S.energy_pointing_game(flat, tile).mean() == pytest.approx(0.25)


def test_mask_and_box_versions():
    boxes = torch.tensor([[2, 1, 5, 4], [0, 0, 8, 8]])
    masks = S.boxes_to_masks(boxes, 8, 8)
    assert masks[0].sum() == 9 and masks[0, 1:4, 2:5].all() and masks[1].all()
    maps = torch.zeros(2, 8, 8)
    maps[0, 2, 3] = 1.0  # inside box 0
    maps[1, 7, 7] = 1.0
    assert S.pointing_game_masks(maps, masks).tolist() == [1.0, 1.0]
    assert S.pointing_game_masks(maps, ~masks)[0] == 0.0
    assert S.energy_masks(maps, masks).tolist() == [1.0, 1.0]


def test_evaluate_saliency_end_to_end_grid_game():
    x, labels = channel_class_images(16, k=4)
    model = ChannelClassModel(4)
    protocol = S.Protocol.of(EvalConfig(batch_size=16, pixels_per_step=5, n_grids=8))
    res = S.evaluate_saliency(model, x, labels, ["gradcam"], protocol, return_maps=True)
    m = res.metrics
    for k in ("insertion", "deletion", "overall", "pointing", "energy", "ses", "seconds"):
        assert np.isfinite(m[f"saliency/gradcam/{k}"]), k
    assert m["saliency/gradcam/pointing"] == 1.0  # the evidence for class c is the tile of class c
    assert m["saliency/gradcam/energy"] > 0.95
    assert m["saliency/gradcam/overall"] == pytest.approx(m["saliency/gradcam/insertion"]
                                                          - m["saliency/gradcam/deletion"])
    assert res.curves["gradcam"]["insertion_curve"].shape == (16, 14)  # 64 px / 5 -> 13 steps
    assert res.maps["gradcam"].shape == (16, 8, 8)
    assert torch.equal(res.predictions, labels) and torch.equal(res.targets, labels)


def test_each_metrics_table_entry_writes_exactly_its_keys():
    """The saliency metrics table (evaluate.METRICS) declares each entry's keys; trial.py derives a
    trial's keys from it before training. Every entry, run on real maps, writes exactly those keys."""
    from lico_tune.saliency.evaluate import METRICS, Context, Protocol, Settings, compute_maps
    from lico_tune.saliency.methods import make_saliency_fn
    x, labels = channel_class_images(16, k=4)
    model = ChannelClassModel(4)
    fn = make_saliency_fn(model, "gradcam", batch_size=16)
    maps = compute_maps(fn, x, labels, 16)
    masks = torch.zeros(16, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True
    protocol = Protocol.of(EvalConfig(batch_size=16, pixels_per_step=8, road_percentiles=[30, 70], n_grids=4,
                                      sanity_max_layers=1, mprt_samples=2))
    settings = Settings(protocol, masks=True, grid=True, n_classes=4)
    seen = []
    for metric in METRICS:
        ctx = Context(model, x, labels, labels, "gradcam", fn, maps, masks, settings, {})
        out = metric.compute(ctx)
        assert set(out) == set(metric.tails), metric.tails
        assert all(math.isfinite(v) for v in out.values()), out
        seen += metric.tails
    assert len(seen) == len(set(seen)), "two entries write the same key"


# ----------------------------------------------------------------------------- sanity, SES


EPOCHS = 3


def _trained_digits_cnn():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8)
    x = (x - 0.3) / 0.4
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = _DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(EPOCHS):
        for i in range(0, len(x), 64):
            loss = nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), x, y


class _DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())  # F: 4x4
        self.fc = nn.Linear(32, 10)

    @property
    def cam_layer(self):
        return self.body[-1]

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


def test_cascading_randomisation_correlation_falls():
    model, x, y = _trained_digits_cnn()
    acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.8  # "trained"
    before = [p.clone() for p in model.parameters()]
    res = S.cascading_randomisation(model, x[:24], y[:24], "gradcam", target_layer=model.cam_layer, seed=0)
    assert res["layers"] == ["(none)", "fc", "body.4", "body.3", "body.1", "body.0"]
    assert res["spearman"].shape == (6, 24)
    assert res["mean"][0] == pytest.approx(1.0, abs=1e-4)  # the trained model against itself
    assert (res["mean"][1:] < 0.8).all()  # falls once the top layer is random, and stays down
    assert res["mean"][-1] < 0.5
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the original is untouched


def test_ses_is_one_for_an_equivariant_map_and_lower_for_random():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 3, 20, 20, generator=g), torch.zeros(12, dtype=torch.long)

    def intensity(images, targets):  # commutes with crop, resize and flip by construction
        return images.mean(1)

    def noise(images, targets):
        return torch.rand(images.shape[0], *images.shape[-2:])

    ses = S.salience_equivariance(intensity, x, y, seed=1, batch_size=5)
    assert ses.shape == (12,) and torch.allclose(ses, torch.ones(12), atol=1e-5)
    torch.manual_seed(0)
    assert S.salience_equivariance(noise, x, y, seed=1).mean() < 0.85
    crops = sample_crops(12, 20, 20, seed=1)
    assert (crops[:, 2] < 20).any() and 0 < crops[:, 4].sum() < 12  # crops and flips happen
    assert torch.equal(crops, sample_crops(12, 20, 20, seed=1))  # seeded


# ----------------------------------------------------------------------------- gallery


def test_write_gallery_and_figure(tmp_path):
    from matplotlib.image import imread

    x, labels = channel_class_images(3, k=4)
    x3 = x[:, :3]  # 3-channel images for the display path; a 3-class model on them
    model = ChannelClassModel(3)
    protocol = S.Protocol.of(EvalConfig(batch_size=64, pixels_per_step=8, rise_n_masks=20))
    out = S.write_gallery(model, x3, labels % 3, str(tmp_path), ["gradcam", "rise"], protocol, class_names=["a", "b", "c"],
                          mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert len(out["overlays"]) == 6
    assert imread(out["overlays"][0]).shape[:2] == (128, 128)
    fig = imread(str(tmp_path / "explain.png"))
    assert fig.shape[0] > 500 and fig.shape[1] > 800
    rec = json.loads((tmp_path / "curves.json").read_text())
    npz = np.load(tmp_path / "curves.npz")
    assert rec["images"][1]["label_name"] == "b" and rec["n_steps"] == 8
    assert rec["images"][2]["methods"]["rise"]["insertion_auc"] == pytest.approx(float(npz["rise/insertion"][2]))
    assert npz["gradcam/insertion_curve"].shape == (3, 9) and npz["gradcam/maps"].shape == (3, 8, 8)
