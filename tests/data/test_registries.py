"""Datasets and text encoders answer for themselves: a registry row owns what its entry needs on
disk (`require`) and how a result names it (`identity`); preflight (plan/preflight.py) and
provenance (provenance.py) only ask. A toy dataset and a toy text encoder, registered here without
touching either module, go through both. A dataset's facts live in data/ only: its row in
data/registry.py and its name and class names in data/names.py, which the spec's choices are built from."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from lico_tune.data import DatasetMissing, class_names_for
from lico_tune.data import names as data_names
from lico_tune.data.errors import missing, not_downloadable
from lico_tune.data.registry import REGISTRY, DatasetInfo
from lico_tune.models.text import ENCODERS, TextEncoderInfo, TextEncoderMissing
from lico_tune.plan.preflight import check_data, check_text
from lico_tune.provenance import dataset_identity, text_weights_identity
from lico_tune.spec import DataConfig, TextConfig

CLOSED = "http://127.0.0.1:9/toy.bin"     # the discard port: nothing listens, the probe fails at once


def _toy_require(cfg, probe) -> None:
    f = Path(cfg.root) / "toy.bin"
    if f.is_file():
        return
    if not cfg.download:
        raise missing("toy", [f], "Write toy.bin there.")
    why = probe(CLOSED)
    if why is not None:
        raise not_downloadable("toy", CLOSED, why, [f], "toy.bin", "curl -o toy.bin " + CLOSED)


def _toy_identity(cfg, digest) -> dict:
    folder = Path(cfg.root)
    return {"name": "toy", "path": str(folder), **digest([folder / "toy.bin"], folder)}


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.setitem(REGISTRY, "toy", DatasetInfo(None, None, None, False, _toy_require, _toy_identity))
    monkeypatch.setitem(data_names.FIXED, "toy", ["left", "right"])
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    # The spec's dataset names are fixed when it is loaded (test_the_spec_takes_its_datasets_from_data
    # shows the spec built after a toy entry); the row is what preflight and provenance read.
    return DataConfig(root=str(tmp_path)).model_copy(update={"name": "toy"})


def test_a_toy_dataset_is_checked_by_preflight_and_named_by_provenance(toy, tmp_path):
    with pytest.raises(DatasetMissing, match=r"Dataset 'toy' not found: looked in .*toy\.bin\. Write toy\.bin there\."):
        check_data(toy)
    # data.download: preflight gives the row its probe; one try at a closed port, refused naming the URL
    with pytest.raises(DatasetMissing, match=r"cannot be downloaded now: http://127\.0\.0\.1:9/toy\.bin gave .+ "
                                             r"\(one try, timeout \d+ s\)"):
        check_data(toy.model_copy(update={"download": True}))
    (tmp_path / "toy.bin").write_bytes(b"a toy dataset")
    check_data(toy)                                                        # here: nothing to say
    ident = dataset_identity(toy)
    one = hashlib.sha256(b"toy.bin\0" + hashlib.sha256(b"a toy dataset").hexdigest().encode() + b"\n").hexdigest()
    assert ident == {"name": "toy", "path": str(tmp_path), "sha256": one, "files": 1, "bytes": 13}
    # a file that vanished between the check and the record: the record says so, the trial goes on
    (tmp_path / "toy.bin").unlink()
    assert dataset_identity(toy)["error"].startswith("FileNotFoundError")
    assert class_names_for("toy") == ["left", "right"]


def test_the_spec_takes_its_datasets_from_data():
    """A dataset entered in data/names.py (here in a fresh interpreter, before the spec loads) is a
    `data.name` the spec accepts and its JSON Schema lists; nothing outside data/ names it."""
    code = ("import json, lico_tune.data.names as n\n"
            "n.FIXED['toy'] = ['left', 'right']; n.DATASETS = (*n.FIXED, *n.FROM_FILES)\n"
            "from lico_tune.spec import DataConfig\n"
            "print(json.dumps([DataConfig(name='toy').name, DataConfig.model_json_schema()['properties']['name']]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    name, schema = json.loads(out.stdout.strip().splitlines()[-1])
    assert name == "toy" and schema["enum"] == ["fashion_mnist", "digits", "placed_fmnist", "cifar10", "cifar100",
                                                "svhn", "toy", "imagefolder"]


def test_every_registered_dataset_and_encoder_answers_for_itself():
    for name, info in REGISTRY.items():
        assert callable(info.require) and callable(info.identity), name
        assert (info.load is None) != (info.build is None), f"{name}: one way to make its splits"
    for name, info in ENCODERS.items():
        module = info.module()
        assert callable(module.require) and callable(module.identity) and hasattr(module, info.learner), name


def test_a_toy_text_encoder_is_checked_and_named_the_same_way(monkeypatch, tmp_path):
    weights = tmp_path / "toy.safetensors"

    def require(cfg, probe):
        if not weights.is_file():
            raise TextEncoderMissing(f"The toy encoder's weights {weights} are missing.")

    toy = types.SimpleNamespace(require=require, identity=lambda cfg, digest: digest([weights], None),
                                ToyLearner=object)
    monkeypatch.setitem(ENCODERS, "toy", TextEncoderInfo(lambda: toy, "ToyLearner"))
    cfg = TextConfig().model_copy(update={"encoder": "toy", "model": "toy"})
    with pytest.raises(TextEncoderMissing, match="toy encoder's weights"):
        check_text(cfg)
    weights.write_bytes(b"w")
    check_text(cfg)
    ident = text_weights_identity(cfg)
    assert ident["encoder"] == "toy" and ident["files"] == 1 and ident["bytes"] == 1 and len(ident["sha256"]) == 64


def test_the_clip_tag_is_checked_in_one_place():
    """Preflight and the learner both ask openclip.pretrained_cfg: an unknown tag is one SpecError."""
    from lico_tune.errors import SpecError
    from lico_tune.models.text import openclip
    with pytest.raises(SpecError, match="'nonsense' is neither a file nor a pretrained tag of ViT-B-32 .tags: .*openai"):
        check_text(TextConfig(encoder="open_clip", model="ViT-B-32", pretrained="nonsense"))
    with pytest.raises(SpecError, match="'nonsense' is neither a file nor a pretrained tag"):
        openclip.resolve_pretrained("ViT-B-32", "nonsense")
