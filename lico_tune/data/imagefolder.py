"""Any folder of class folders (ImageNet, Imagenette, CUB...): file-backed, decoded per image.

Layout: root/train/<class>/*.jpg and root/test/<class>/*.jpg (or root/val/). Labels are the
sorted folder names (torchvision's ImageFolder order); the class names are the folder names with
'_' -> ' ', or the lines of data.class_names_file in that same order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset

from .errors import Probe, missing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
TEST_DIRS = ("test", "val")


class FolderSet(Dataset):
    """A file-backed split. An item is an index, or (index, seed): with a seed, the random
    transform is drawn from torch's RNG seeded with it, so an epoch is reproducible whatever the
    number of DataLoader workers."""

    file_backed = True

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable, mean, std,
                 image_size: int, augment: bool, num_workers: int = 0):
        self.samples = list(samples)
        self.labels = torch.tensor([y for _, y in self.samples], dtype=torch.long)   # (N,)
        self.transform = transform
        self.mean, self.std = tuple(mean), tuple(std)
        self.image_size = image_size
        self.augment = augment
        self.num_workers = num_workers
        self.in_channels = 3

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"FolderSet(n={len(self)}, size={self.image_size}, augment={self.augment})"

    def __getitem__(self, item) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        i, seed = item if isinstance(item, tuple) else (item, None)
        path, y = self.samples[int(i)]
        img = default_loader(path)                                            # PIL RGB
        if seed is None:
            return self.transform(img), y
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return self.transform(img), y                                     # (3, S, S) normalised

    def batch(self, indices: torch.Tensor, generator: Optional[torch.Generator] = None,
              device=None, augment: Optional[bool] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The slow generic path (decodes one file at a time): same contract as ImageSet.batch."""
        ds = self if augment is None or augment == self.augment else self.with_augment(augment)
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        seeds = torch.randint(0, 2**62, (len(indices),), generator=generator)
        items = [ds[(int(i), int(s))] for i, s in zip(indices, seeds)]
        x = torch.stack([t for t, _ in items])                                # (B, 3, S, S)
        y = torch.tensor([t for _, t in items], dtype=torch.long)
        return (x, y) if device is None else (x.to(device), y.to(device))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        m = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - m) / s

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x * s + m).clamp(0, 1)

    def subset(self, indices: torch.Tensor) -> "FolderSet":
        return FolderSet([self.samples[int(i)] for i in indices], self.transform, self.mean, self.std,
                         self.image_size, self.augment, self.num_workers)

    def with_augment(self, augment: bool) -> "FolderSet":
        return FolderSet(self.samples, transforms_for(self.image_size, augment, self.mean, self.std),
                         self.mean, self.std, self.image_size, augment, self.num_workers)


def transforms_for(size: int, augment: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Callable:
    """Train: random-resized crop + flip. Test (or augment off): resize to size*256/224, centre crop."""
    from torchvision import transforms as T

    if augment:
        head = [T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip()]
    else:
        head = [T.Resize(round(size * 256 / 224), antialias=True), T.CenterCrop(size)]
    return T.Compose(head + [T.ToTensor(), T.Normalize(mean, std)])


def _split_dirs(root: Path) -> tuple[Path, Path]:
    looked = [root / "train"] + [root / d for d in TEST_DIRS]
    test = next((root / d for d in TEST_DIRS if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or test is None:
        raise missing("imagefolder", looked,
                      "Point data.root at a folder with train/ and test/ (or val/) subfolders, each holding "
                      "one folder of images per class (e.g. an extracted Imagenette: root/train/n01440764/*.JPEG).")
    return root / "train", test


def class_names(root: str | Path, class_names_file: Optional[str] = None) -> list[str]:
    """Names in label order, from the class folders of root/train (no image is opened)."""
    from torchvision.datasets.folder import find_classes

    train_dir, _ = _split_dirs(Path(root).expanduser())
    folders, _ = find_classes(str(train_dir))                                 # sorted
    if class_names_file is None:
        return [f.replace("_", " ") for f in folders]
    path = Path(class_names_file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data.class_names_file {path} does not exist; write one class name per line, "
                                f"in the sorted order of the folders in {train_dir}.")
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) != len(folders) or not all(lines):
        shown = ", ".join(folders[:5]) + (", ..." if len(folders) > 5 else "")
        raise ValueError(f"data.class_names_file {path} has {len(lines)} lines"
                         f"{' (some empty)' if not all(lines) else ''} but {train_dir} has {len(folders)} "
                         f"class folders ({shown}); write exactly one name per folder, one per line, in that "
                         f"sorted folder order.")
    return lines


def build(cfg) -> tuple[FolderSet, FolderSet, list[str], int, str]:
    """(train, test, class names, image size, source) for data.name = imagefolder."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if not cfg.root:
        raise missing("imagefolder", [], "data.name: imagefolder needs data.root: a folder with train/ and "
                      "test/ (or val/) subfolders of class folders.", why="has no location")
    root = Path(cfg.root).expanduser()
    train_dir, test_dir = _split_dirs(root)
    names = class_names(root, cfg.class_names_file)
    folders, class_to_idx = find_classes(str(train_dir))
    test_folders, _ = find_classes(str(test_dir))
    extra = sorted(set(test_folders) - set(folders))
    if extra:
        raise ValueError(f"{test_dir} has class folders that {train_dir} lacks: {extra[:5]}; labels come from "
                         f"the train folders, so both splits must use the same class folders.")
    size = cfg.image_size or DEFAULT_SIZE
    train_samples = make_dataset(str(train_dir), class_to_idx, extensions=IMG_EXTENSIONS)
    test_samples = make_dataset(str(test_dir), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    mk = lambda samples, aug: FolderSet(samples, transforms_for(size, aug), IMAGENET_MEAN, IMAGENET_STD,
                                        size, aug, cfg.num_workers)
    return mk(train_samples, cfg.augment), mk(test_samples, False), names, size, str(root)


def require(cfg, probe: Probe) -> None:
    """data.root set and a folder (its train/ and test/ are checked when a trial builds the splits)."""
    if cfg.root is None or not Path(cfg.root).expanduser().is_dir():
        raise missing("imagefolder", [cfg.root or "(data.root not set)"],
                      "Set data.root to a folder with train/ and test/ class folders.")
