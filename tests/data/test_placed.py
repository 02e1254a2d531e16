"""placed_fmnist (items on a cluttered canvas, with boxes) and the shortcut probe (data.shortcut).

Offline: Fashion-MNIST from the Debian package; the canvases are cached in tmp_path (DATA_HOME is
patched), generated from only the first few hundred items (data.placed.max_items) to stay fast.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lico_tune import data as D
from lico_tune.data import names, paths, placed
from lico_tune.data.shortcut import patch_slots, plant
from lico_tune.errors import TrialConfigError
from lico_tune.spec import DataConfig, PlacedConfig, SpecError, validate_trial

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason="Fashion-MNIST not installed (sudo apt-get install dataset-fashion-mnist)")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(paths, "DATA_HOME", tmp_path / "data")
    return tmp_path / "data"


def small(**kw) -> DataConfig:
    return DataConfig(name="placed_fmnist", placed={"max_items": 400, **kw.pop("placed", {})}, **kw)


def _items(n=200, seed=0):
    """Synthetic 28 px items: a random rectangle of bright pixels each, with known tight boxes."""
    rng = np.random.default_rng(seed)
    items = np.zeros((n, 28, 28), np.uint8)
    x0, y0 = rng.integers(0, 14, (2, n))
    w, h = rng.integers(3, 14, (2, n))
    for i in range(n):
        items[i, y0[i]:y0[i] + h[i], x0[i]:x0[i] + w[i]] = 200
    return items, rng.integers(0, 10, n), np.stack([x0, y0, x0 + w, y0 + h], 1)


def test_tight_boxes_are_the_hand_drawn_rectangles():
    items, _, truth = _items()
    assert np.array_equal(placed.tight_boxes(items), truth)
    empty = np.zeros((1, 28, 28), np.uint8)
    assert placed.tight_boxes(empty).tolist() == [[0, 0, 28, 28]]


def test_each_box_is_inside_the_canvas_and_covers_its_item():
    items, labels, _ = _items()
    params = placed.params_of(PlacedConfig(canvas=48, clutter=0, noise=0.0, item_contrast=(1.0, 1.0)))
    imgs, boxes = placed.generate(items, labels, params, seed=3)
    assert imgs.shape == (200, 48, 48) and boxes.shape == (200, 4)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 48).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    # Without clutter and noise, every bright pixel is the item's, and it lies inside the box,
    # and the box is tight: each of its edges touches a bright pixel.
    for img, (x0, y0, x1, y1), item in zip(imgs, boxes, items):
        on = img > 0
        assert on.sum() == (item > 0).sum()
        assert on[y0:y1, x0:x1].sum() == on.sum()
        assert on[y0, x0:x1].any() and on[y1 - 1, x0:x1].any() and on[y0:y1, x0].any() and on[y0:y1, x1 - 1].any()
    # the positions really vary over the canvas
    assert len({tuple(b[:2]) for b in boxes}) > 100


def test_clutter_comes_from_other_classes_and_the_item_stays_on_top():
    items, labels, _ = _items()
    params = placed.params_of(PlacedConfig(canvas=64, clutter=4, noise=0.0, item_contrast=(1.0, 1.0)))
    imgs, boxes = placed.generate(items, labels, params, seed=1)
    outside = imgs.copy()
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        assert (imgs[i, y0:y1, x0:x1] >= 200).sum() >= (items[i] > 0).sum()   # max-composited: item intact
        outside[i, y0:y1, x0:x1] = 0
    # clutter is dimmer than the item (contrast <= 0.8 of 200) and present on most canvases
    assert outside.max() <= round(0.8 * 200) and (outside.reshape(200, -1).max(1) > 0).mean() > 0.5
    with pytest.raises(ValueError, match="other class"):
        placed.generate(items, np.zeros(200, np.int64), params, seed=1)


def test_same_seed_same_canvases_other_seed_other():
    items, labels, _ = _items(64)
    params = placed.params_of(PlacedConfig())
    a = placed.generate(items, labels, params, seed=5)
    b = placed.generate(items, labels, params, seed=5)
    c = placed.generate(items, labels, params, seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@needs_fmnist
def test_registered_cached_and_named_like_fashion_mnist(cache):
    assert D.class_names_for("placed_fmnist") == names.FASHION_MNIST
    bundle = D.build_data(small(), seed=0)
    assert bundle.class_names == names.FASHION_MNIST and bundle.image_size == 64
    assert len(bundle.train) == 400 and len(bundle.test) == 400
    # labels are Fashion-MNIST's own, in order (the first 400 items of each split)
    fm = D.build_data(DataConfig(name="fashion_mnist"), seed=0)
    assert torch.equal(bundle.test.labels, fm.test.labels[:400])
    b = bundle.test.boxes
    assert b.shape == (400, 4) and (b[:, :2] >= 0).all() and (b[:, 2:] <= 64).all()
    folders = list((cache / "placed_fmnist").iterdir())
    assert len([f for f in folders if f.is_dir()]) == 1
    again = D.build_data(small(), seed=0)                     # read from the cache: identical
    assert torch.equal(again.test.images, bundle.test.images)
    (folders[0] / "meta.json").unlink()                       # an interrupted write: regenerated, same
    assert torch.equal(D.build_data(small(), seed=0).test.images, bundle.test.images)
    D.build_data(small(placed={"seed": 1}), seed=0)           # other parameters: another cache entry
    assert len([f for f in (cache / "placed_fmnist").iterdir() if f.is_dir()]) == 2
    # the boxes survive subsets and a resize (outward rounding keeps the item covered)
    sub = D.build_data(small(test_subset=50, image_size=32), seed=0)
    assert sub.test.boxes.shape == (50, 4) and sub.image_size == 32
    assert (sub.test.boxes[:, 2:] <= 32).all()


def test_placed_fields_are_checked():
    with pytest.raises(SpecError, match="data.placed.item_contrast"):
        validate_trial({"data": {"name": "placed_fmnist", "placed": {"item_contrast": [0.9, 0.2]}}})
    with pytest.raises(SpecError, match="data.placed.canvas"):
        validate_trial({"data": {"placed": {"canvas": 20}}})


# ----------------------------------------------------------------------------- shortcut


def test_patch_slots_are_class_coded_inside_the_margin_and_flip_safe():
    slots = patch_slots(28, 28, 3, 10, margin=4)
    assert len({tuple(s) for s in slots.tolist()}) == 10
    assert (slots >= 4).all() and (slots[:, 0] + 3 <= 24).all() and (slots[:, 1] + 3 <= 14).all()
    # patches never overlap each other
    img = torch.zeros(10, 1, 28, 28, dtype=torch.uint8)
    painted = plant(img, torch.arange(10), torch.ones(10, dtype=torch.bool), slots, 3, 1)
    assert painted.sum(0).max() == 1 and painted.sum() == 90
    with pytest.raises(ValueError, match="data.shortcut"):
        patch_slots(8, 8, 3, 10, margin=1)


@needs_fmnist
def test_shortcut_patch_where_and_as_often_as_configured(cache):
    cfg = DataConfig(name="fashion_mnist", train_subset=500, test_subset=200,
                     shortcut={"fraction": 0.3, "size": 3, "test": "shuffled"})
    bundle = D.build_data(cfg, seed=0)
    clean = D.build_data(DataConfig(name="fashion_mnist", train_subset=500, test_subset=200), seed=0)
    probe = bundle.shortcut
    planted = probe.train_planted
    assert int(planted.sum()) == 150                                   # round(0.3 * 500)
    diff = (bundle.train.images != clean.train.images).flatten(1).any(1)
    assert torch.equal(diff & ~planted, torch.zeros_like(diff))        # only the chosen images changed
    for i in planted.nonzero().flatten()[:40].tolist():
        top, left = probe.slots[int(bundle.train.labels[i])].tolist()
        assert (bundle.train.images[i, 0, top:top + 3, left:left + 3] == 255).all()
        changed = bundle.train.images[i, 0] != clean.train.images[i, 0]
        assert not changed[:top].any() and not changed[top + 3:].any()   # nothing outside the patch rows
    # the same picks for every trial seed (fixed by shortcut.seed)
    assert torch.equal(D.build_data(cfg, seed=7).shortcut.train_planted, planted)
    # test: 'shuffled' reports on images carrying another class's patch; boxes say where
    y = probe.patched.labels
    assert bundle.test is probe.shuffled
    for boxes, images, same in ((probe.patched_boxes, probe.patched.images, True),
                                (probe.shuffled_boxes, probe.shuffled.images, False)):
        for i in range(20):
            x0, y0, x1, y1 = boxes[i].tolist()
            assert (images[i, 0, y0:y1, x0:x1] == 255).all()
            assert torch.equal(probe.slots[y[i]], torch.tensor([y0, x0])) == same
    assert torch.equal(probe.clean.images, clean.test.images)
    absent = D.build_data(cfg.model_copy(update={"shortcut": cfg.shortcut.model_copy(update={"test": "absent"})}), 0)
    assert torch.equal(absent.test.images, clean.test.images)
    # no shortcut section active: nothing planted, no probe
    assert clean.shortcut is None


def test_patch_slots_whole_region_fits_larger_patches_and_says_how_when_they_do_not():
    # 10 patches of 5 px: no room in the left half of 28 px with the crop's 4 px margin (hand count: 3 rows
    # of 6 px in 20 px, 4 columns need 4 + 4 * 6 - 1 = 27 px > 14); room across the whole width without a
    # margin (4 rows in 28 px, 3 columns: 17 px <= 28).
    with pytest.raises(TrialConfigError, match="region: whole"):
        patch_slots(28, 28, 5, 10, margin=4)
    slots = patch_slots(28, 28, 5, 10, margin=0, region="whole")
    assert len({tuple(s) for s in slots.tolist()}) == 10
    assert (slots >= 0).all() and (slots[:, 0] + 5 <= 28).all() and (slots[:, 1] + 5 <= 28).all()
    img = torch.zeros(10, 1, 28, 28, dtype=torch.uint8)
    painted = plant(img, torch.arange(10), torch.ones(10, dtype=torch.bool), slots, 5, 1)
    assert painted.sum(0).max() == 1 and painted.sum() == 250
    with pytest.raises(TrialConfigError, match="whole of a 28 x 28 image with a 0 px") as info:
        patch_slots(28, 28, 8, 10, margin=0, region="whole")
    assert "region: whole" not in str(info.value)


def test_whole_region_is_refused_with_augmentation():
    with pytest.raises(SpecError, match="shortcut.region 'whole' needs data.augment: false"):
        validate_trial({"data": {"augment": True, "shortcut": {"fraction": 0.5, "region": "whole"}}})
    validate_trial({"data": {"augment": False, "shortcut": {"fraction": 0.5, "region": "whole"}}})


@needs_fmnist
def test_provenance_names_the_source_and_the_generation_parameters_not_the_cache_folder(cache):
    from lico_tune.provenance import dataset_identity
    cfg = small()
    D.build_data(cfg, seed=0)                                           # caches these canvases
    ident = dataset_identity(cfg)
    source = dataset_identity(DataConfig(name="fashion_mnist"))
    assert ident["generated_from"]["sha256"] == source["sha256"]
    assert ident["params"] == placed.params_of(cfg.placed) and ident["params"]["max_items"] == 400
    assert ident["cache_key"] == placed.cache_key(ident["params"]) == placed.cache_dir(cfg).name
    D.build_data(small(placed={"canvas": 40}), seed=0)                 # another parameter set cached beside it
    assert dataset_identity(cfg) == ident
    assert dataset_identity(small(placed={"canvas": 40}))["cache_key"] != ident["cache_key"]
