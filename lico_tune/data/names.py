"""The datasets' names and their class names in label order (class_names[y] is the name of label
y): the one list of datasets. The spec's `data.name` choices are built from DATASETS
(lico_tune/spec/trial.py) and the registry (registry.py) asserts it implements exactly them.

A leaf: it imports nothing, so the spec reads it without loading torch or the registry (the one
import of data/ the spec makes; tests/project/test_architecture.py holds both to that).
Hard-coded so that names are known without loading (or downloading) a dataset; tests check
them against torchvision and against the data itself. Names go into text prompts, so they are
words: digits are spelled out and CIFAR-100's underscores become spaces.
"""
from __future__ import annotations

# torchvision.datasets.FashionMNIST.classes (a class attribute).
FASHION_MNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# sklearn digits: target k is the digit k. SVHN in torchvision: label 0 is the digit 0 (the .mat
# files store 0 as 10; torchvision maps it to 0), so the same words apply.
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# label_names of cifar-10-batches-py/batches.meta. The released LICO code listed "car" and
# "automobile" and dropped "bird"; this list is the dataset's own.
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# fine_label_names of cifar-100-python/meta, exactly as stored (alphabetical, with underscores).
CIFAR100_RAW = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]


def prompt_name(raw: str) -> str:
    """A stored label name as it goes into a prompt: 'aquarium_fish' -> 'aquarium fish'."""
    return raw.replace("_", " ")


CIFAR100 = [prompt_name(n) for n in CIFAR100_RAW]

FIXED = {
    "fashion_mnist": FASHION_MNIST,
    "digits": DIGIT_WORDS,
    "placed_fmnist": FASHION_MNIST,      # Fashion-MNIST items placed on a canvas: same labels
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "svhn": DIGIT_WORDS,
}
# Datasets whose class names are read from their own files (imagefolder: its class folders, or
# data.class_names_file; imagefolder.py).
FROM_FILES = ("imagefolder",)

DATASETS = (*FIXED, *FROM_FILES)      # in this order in the spec's choices and its JSON Schema
