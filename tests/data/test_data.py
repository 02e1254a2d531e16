"""lico_tune.data: class-name order, missing-data errors, subsets, batched augmentation, imagefolder.

Offline only: Fashion-MNIST from the Debian package, sklearn's digits, and tiny fakes written in
tmp_path in the on-disk formats torchvision reads (CIFAR pickles, SVHN .mat, PNG class folders).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lico_tune import data as D
from lico_tune.data import fashion_mnist, names, paths
from lico_tune.data.imageset import ImageSet, augment_uint8
from lico_tune.spec import DataConfig

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason="Fashion-MNIST not installed (sudo apt-get install dataset-fashion-mnist)")


def cfg(**kw) -> DataConfig:
    return DataConfig(**kw)


# ----------------------------------------------------------------------------- the package surface


def test_dataset_names_match_spec_and_names_are_known_without_data():
    from typing import get_args

    from lico_tune.spec import DatasetName

    assert D.dataset_names() == list(get_args(DatasetName))
    for name in D.dataset_names():
        if name != "imagefolder":
            got = D.class_names_for(name)
            assert len(got) == len(set(got)) and got, name
    assert len(D.class_names_for("cifar100")) == 100


# ----------------------------------------------------------------------------- class-name order


@needs_fmnist
def test_fashion_mnist_names_are_torchvision_and_fit_the_images():
    """Names equal torchvision's class attribute (no download needed), and the mean image of each
    of 7 classes shows its garment's shape. A wrong order (sorted names, an off-by-one) moves
    at least one of these labels, so this fails; Pullover/Coat/Shirt are not told apart here."""
    import torchvision

    b = D.build_data(cfg(name="fashion_mnist"))
    assert b.class_names == list(torchvision.datasets.FashionMNIST.classes)
    assert (b.num_classes, b.in_channels, b.image_size, len(b.train), len(b.test)) == (10, 1, 28, 60000, 10000)

    x = b.test.images[:, 0].float() / 255                                     # (10000, 28, 28)
    m = torch.stack([x[b.test.labels == k].mean(0) for k in range(10)])       # (10, 28, 28) mean images
    idx = {n: i for i, n in enumerate(b.class_names)}
    ink = m.mean((1, 2))
    leg_gap = m[:, 18:27][:, :, [9, 10, 17, 18]].mean((1, 2)) - m[:, 18:27, 13:15].mean((1, 2))
    top = m[:, :7].mean((1, 2))                                               # top quarter
    low_edges = m[:, 14:24][:, :, [1, 2, 25, 26]].mean((1, 2))                # lower left/right edges
    width = (m.amax(1) > 0.2).sum(1)                                          # columns with ink
    width_mid = (m[:, 12] > 0.2).sum(1)                                       # ink width at mid height
    height = (m.amax(2) > 0.2).sum(1)

    assert int(leg_gap.argmax()) == idx["Trouser"]                            # two legs, a gap between
    assert int(ink.argmin()) == idx["Sandal"]                                 # sparse straps
    assert int(top.argmin()) == idx["Sneaker"]                                # low shoe: empty top
    assert int(low_edges.argmax()) == idx["Ankle boot"]                       # boot sole spans the width
    assert int(width_mid.argmax()) == idx["Bag"]                              # a wide box
    assert set(width.argsort()[:2].tolist()) == {idx["Trouser"], idx["Dress"]}  # the narrow garments
    tops = [k for k in range(10) if height[k] == 28 and width[k] >= 20]       # T-shirt, pullover, coat, shirt
    assert min(tops, key=lambda k: float(low_edges[k])) == idx["T-shirt/top"]  # short sleeves


def test_digits_names_follow_sklearn_targets_and_images():
    """Names are the words for sklearn's target_names in order, and the images agree: the class
    named 'zero' has a hole in the middle, the one named 'one' the strongest central stroke."""
    from sklearn.datasets import load_digits

    b = D.build_data(cfg(name="digits"))
    target_names = load_digits().target_names
    assert b.class_names == [names.DIGIT_WORDS[int(t)] for t in target_names]
    assert b.class_names[:3] == ["zero", "one", "two"]

    m = torch.stack([b.train.images[b.train.labels == k, 0].float().mean(0) for k in range(10)])  # (10, 8, 8)
    ring = torch.cat([m[:, 1, 2:6], m[:, 6, 2:6], m[:, 2:6, 1], m[:, 2:6, 6]], 1).mean(1)
    hole = ring - m[:, 2:6, 3:5].mean((1, 2))
    assert b.class_names[int(hole.argmax())] == "zero"
    assert b.class_names[int(hole.argmin())] == "one"


def _write_fake_cifar10(root: Path, label_names: list[str], n: int = 10) -> np.ndarray:
    """cifar-10-batches-py in the real pickle format (data: uint8 (n, 3072) as R, G, B planes of
    32x32 row-major; labels: list; batches.meta: label_names). Returns the labels written."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10
    for fname in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        imgs = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        imgs[0] = 0
        imgs[0, 0, 0, :] = 255                                                # image 0: a red top row
        with open(folder / fname, "wb") as f:
            pickle.dump({"data": imgs.reshape(n, 3072), "labels": labels.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": label_names, "num_cases_per_batch": n}, f)
    return labels


@pytest.fixture
def no_md5(monkeypatch):
    """Fakes cannot match torchvision's md5 sums; everything else of its loading runs as is."""
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.svhn as tv_svhn

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tv_svhn, "check_integrity", lambda *a, **k: True)


def test_cifar10_loads_through_torchvision_and_checks_names(tmp_path, no_md5):
    """With a fake whose batches.meta lists the documented CIFAR-10 order, torchvision's .classes
    (read from that meta) equals our list, and images keep their layout. This proves the plumbing
    and the check; only real data can prove the real meta's order (build_data checks it then)."""
    import torchvision

    labels = _write_fake_cifar10(tmp_path, names.CIFAR10)
    assert torchvision.datasets.CIFAR10(str(tmp_path), train=True).classes == names.CIFAR10
    b = D.build_data(cfg(name="cifar10", root=str(tmp_path)))
    assert b.class_names == names.CIFAR10
    assert (len(b.train), len(b.test), b.in_channels, b.image_size) == (50, 10, 3, 32)
    assert b.train.labels[:10].tolist() == labels.tolist()
    img = b.test.images[0]                                                    # (3, 32, 32)
    assert img[0, 0].eq(255).all() and img[0, 1:].eq(0).all() and img[1:].eq(0).all()
    assert b.train.flip and b.train.pad == 4


def test_cifar10_meta_in_another_order_is_rejected(tmp_path, no_md5):
    wrong = names.CIFAR10[1:] + names.CIFAR10[:1]                             # an off-by-one shift
    _write_fake_cifar10(tmp_path, wrong)
    with pytest.raises(ValueError, match="order"):
        D.build_data(cfg(name="cifar10", root=str(tmp_path)))


def test_cifar100_names_are_the_stored_fine_labels():
    """The real meta's fine_label_names are alphabetical with underscores; our raw list must be
    100 unique names in that order, and prompt names replace underscores (checks spelling only
    against our own copy: the real meta is compared at load time)."""
    raw = names.CIFAR100_RAW
    assert len(raw) == 100 == len(set(raw)) and raw == sorted(raw)
    assert names.CIFAR100[1] == "aquarium fish" and "_" not in "".join(names.CIFAR100)


def test_svhn_label_zero_is_digit_zero(tmp_path, no_md5):
    """SVHN's .mat stores digit 0 as label 10; torchvision maps it to 0, so names[0] == 'zero'."""
    from scipy.io import savemat

    n = 12
    X = np.zeros((32, 32, 3, n), dtype=np.uint8)                              # (H, W, C, N) as in the .mat
    X[0, :, :, :] = 255                                                       # top row white
    y = (np.arange(n) % 10 + 1).reshape(n, 1)                                 # digits 1..9 and 10 (= zero)
    for split in ("train", "test"):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": y})
    b = D.build_data(cfg(name="svhn", root=str(tmp_path), augment=True))
    assert b.class_names == names.DIGIT_WORDS
    assert b.train.labels.tolist() == [(k % 10 + 1) % 10 for k in range(n)]
    assert b.train.images[:, :, 0].eq(255).all() and b.train.images[:, :, 1:].eq(0).all()
    assert not b.train.flip                                                   # no flip for digits


# ----------------------------------------------------------------------------- missing data


def test_cifar10_missing_names_path_and_fix(tmp_path):
    root = tmp_path / "empty"
    with pytest.raises(D.DatasetMissing) as e:
        D.build_data(cfg(name="cifar10", root=str(root)))
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert str(root / "cifar-10-batches-py") in msg
    assert "data.download: true" in msg and "data.root" in msg and "\n" not in msg


def test_fashion_mnist_missing_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(paths, "DATA_HOME", tmp_path / "home")
    with pytest.raises(D.DatasetMissing) as e:
        D.build_data(cfg(name="fashion_mnist", root=str(tmp_path / "mine")))
    msg = str(e.value)
    for place in (tmp_path / "mine", tmp_path / "system", tmp_path / "home" / "FashionMNIST" / "raw"):
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data.download: true" in msg


@needs_fmnist
def test_fashion_mnist_found_in_a_torchvision_root(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in FMNIST_DIR.glob("*-ubyte.gz"):
        (raw / f.name).symlink_to(f)
    assert fashion_mnist.find_dir(str(tmp_path)) == raw                       # before the system folder
    assert fashion_mnist.find_dir(str(tmp_path / "elsewhere")) == FMNIST_DIR
    labels = fashion_mnist.read_idx(raw / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and np.bincount(labels).tolist() == [1000] * 10


def test_image_size_resizes_once_and_scales_the_crop_pad():
    b = D.build_data(cfg(name="digits", image_size=16))
    assert b.image_size == 16 and b.train.images.shape[1:] == (1, 16, 16) and b.train.pad == 2
    x, _ = b.train.batch(torch.arange(8), generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 16, 16)


# ----------------------------------------------------------------------------- subsets


def test_labels_per_class_exact_and_seeded():
    b0 = D.build_data(cfg(name="digits", labels_per_class=5), seed=0)
    b0b = D.build_data(cfg(name="digits", labels_per_class=5), seed=0)
    b1 = D.build_data(cfg(name="digits", labels_per_class=5), seed=1)
    assert torch.bincount(b0.train.labels, minlength=10).tolist() == [5] * 10
    assert torch.equal(b0.train.images, b0b.train.images)
    assert not torch.equal(b0.train.images, b1.train.images)
    assert torch.equal(b0.test.images, b1.test.images)                        # the test split never moves
    with pytest.raises(ValueError, match="labels_per_class"):
        D.build_data(cfg(name="digits", labels_per_class=1000))


def test_subsets_stratified_and_test_subset_fixed():
    full = D.build_data(cfg(name="digits"), seed=0)
    assert torch.equal(full.train.images, D.build_data(cfg(name="digits"), seed=7).train.images)
    b3 = D.build_data(cfg(name="digits", train_subset=100, test_subset=50), seed=3)
    b4 = D.build_data(cfg(name="digits", train_subset=100, test_subset=50), seed=4)
    counts = torch.bincount(b3.train.labels, minlength=10)
    assert len(b3.train) == 100 and counts.min() >= 9 and counts.max() <= 11
    assert torch.bincount(b3.test.labels, minlength=10).tolist() == [5] * 10
    assert torch.equal(b3.test.images, b4.test.images)                        # same test images every trial
    assert not torch.equal(b3.train.images, b4.train.images)
    assert len(D.build_data(cfg(name="digits", train_subset=10**6)).train) == len(full.train)


# ----------------------------------------------------------------------------- batched augmentation


def _candidates(img: torch.Tensor, pad: int, flip: bool) -> list[torch.Tensor]:
    """Every crop (zero padding) and flip of one (C, H, W) image, one image at a time."""
    C, H, W = img.shape
    padded = torch.nn.functional.pad(img.float(), (pad, pad, pad, pad))
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + H, dx:dx + W]
            out += [crop, crop.flip(-1)] if flip else [crop]
    return out


def test_batched_augmentation_is_crop_and_flip_and_seeded():
    torch.manual_seed(0)
    imgs = torch.randint(1, 256, (64, 3, 12, 12), dtype=torch.uint8)
    ds = ImageSet(imgs, torch.arange(64) % 4, (0.5,) * 3, (0.25,) * 3, augment=True, pad=2, flip=True)
    idx = torch.arange(64)
    x1, y1 = ds.batch(idx, generator=torch.Generator().manual_seed(1))
    x1b, _ = ds.batch(idx, generator=torch.Generator().manual_seed(1))
    x2, _ = ds.batch(idx, generator=torch.Generator().manual_seed(2))
    assert x1.shape == (64, 3, 12, 12) and x1.dtype == torch.float32 and y1.dtype == torch.int64
    assert torch.equal(x1, x1b) and not torch.equal(x1, x2)

    raw = ds.denormalize(x1).mul(255).round()                                 # back to pixel values
    changed = flipped = 0
    for i in range(64):
        cands = _candidates(imgs[i], 2, True)
        hits = [k for k, c in enumerate(cands) if torch.equal(c, raw[i])]
        assert hits, f"image {i} is not a crop/flip of its original"
        changed += not torch.equal(raw[i], imgs[i].float())
        flipped += all(k % 2 == 1 for k in hits)
    assert changed > 48 and 10 < flipped < 54                                 # crops move, about half flip

    plain, _ = ds.batch(idx, augment=False)
    assert torch.allclose(ds.denormalize(plain) * 255, imgs.float(), atol=1e-3)
    no_flip = augment_uint8(imgs, 0, False)
    assert torch.equal(no_flip, imgs)


def test_no_flip_for_digits_and_test_split_never_augmented():
    b = D.build_data(cfg(name="digits"))
    assert b.train.augment and not b.train.flip and b.train.pad == 1 and not b.test.augment
    idx = torch.arange(len(b.test))
    xa, _ = b.test.batch(idx, generator=torch.Generator().manual_seed(1))
    xb, _ = b.test.batch(idx, generator=torch.Generator().manual_seed(2))
    assert torch.equal(xa, xb) and torch.equal(xa, b.test.normalize(b.test.images))
    x0, y0 = b.test[0]
    assert torch.equal(x0, xa[0]) and y0 == int(b.test.labels[0])
    # normalisation: digits' stats come from its training split, so the plain split is ~N(0, 1)
    xt, _ = b.train.batch(torch.arange(len(b.train)), augment=False)
    assert abs(float(xt.mean())) < 1e-3 and abs(float(xt.std()) - 1) < 1e-2


@needs_fmnist
def test_fashion_mnist_normalisation_near_zero_mean():
    b = D.build_data(cfg(name="fashion_mnist", test_subset=2000))
    x, _ = next(D.iterate_batches(b.test, 2000, shuffle=False, seed=0))
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05


def test_iterate_batches_epochs_reproducible():
    b = D.build_data(cfg(name="digits"))
    run = lambda seed, epoch: [(x, y) for x, y in D.iterate_batches(b.train, 100, True, seed, epoch=epoch)]
    e0, e0b, e1 = run(0, 0), run(0, 0), run(0, 1)
    assert all(torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]) for a, c in zip(e0, e0b))
    assert not torch.equal(e0[0][1], e1[0][1])
    labels = torch.cat([y for _, y in e0])
    assert len(labels) == len(b.train) and torch.equal(labels.sort().values, b.train.labels.sort().values)
    assert len(list(D.iterate_batches(b.train, 100, True, 0, drop_last=True))) == len(b.train) // 100
    g = torch.Generator().manual_seed(5)
    assert len(list(D.iterate_batches(b.test, 64, False, g))) == D.num_batches(len(b.test), 64)


# ----------------------------------------------------------------------------- imagefolder


def _write_folder(root: Path, classes=("cat_face", "dog"), n=3) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")


def test_imagefolder_names_shapes_and_reproducible_batches(tmp_path):
    _write_folder(tmp_path)
    c = cfg(name="imagefolder", root=str(tmp_path), image_size=16)
    b = D.build_data(c, seed=0)
    assert b.class_names == ["cat face", "dog"] == D.class_names_for("imagefolder", root=tmp_path)
    assert (len(b.train), len(b.test), b.in_channels, b.image_size) == (6, 6, 3, 16)
    assert b.train.file_backed and b.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    x, y = b.test[0]
    assert x.shape == (3, 16, 16) and y == 0

    run = lambda: [t for t in D.iterate_batches(b.train, 4, True, 0, epoch=3)]
    a, a2 = run(), run()
    assert [t[0].shape for t in a] == [(4, 3, 16, 16), (2, 3, 16, 16)]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, a2))
    workers = D.build_data(c.model_copy(update={"num_workers": 1}), seed=0)
    a3 = list(D.iterate_batches(workers.train, 4, True, 0, epoch=3))          # same with a worker process
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, a3))
    t1 = torch.cat([x for x, _ in D.iterate_batches(b.test, 6, False, 1)])
    t2 = torch.cat([x for x, _ in D.iterate_batches(b.test, 6, False, 2)])
    assert torch.equal(t1, t2)                                                # test split: no augmentation

    lp = D.build_data(c.model_copy(update={"labels_per_class": 2}), seed=0)
    assert torch.bincount(lp.train.labels).tolist() == [2, 2]


def test_imagefolder_class_names_file(tmp_path):
    _write_folder(tmp_path)
    good = tmp_path / "names.txt"
    good.write_text("tabby cat\ngolden retriever\n")
    b = D.build_data(cfg(name="imagefolder", root=str(tmp_path), image_size=16, class_names_file=str(good)))
    assert b.class_names == ["tabby cat", "golden retriever"]
    bad = tmp_path / "bad.txt"
    bad.write_text("only one\n")
    with pytest.raises(ValueError, match="1 lines .* 2 class folders"):
        D.build_data(cfg(name="imagefolder", root=str(tmp_path), class_names_file=str(bad)))


def test_imagefolder_missing_split(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(D.DatasetMissing, match="val"):
        D.build_data(cfg(name="imagefolder", root=str(tmp_path)))
    with pytest.raises(D.DatasetMissing, match="data.root"):
        D.build_data(cfg(name="imagefolder"))
