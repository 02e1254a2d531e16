"""Backbones and prompt learners: shapes, CAM layer, frozen/fine-tuned encoders, and exactness of the
inputs_embeds paths against the encoders' own forward (MiniLM offline; open_clip on a tiny config)."""
import os

import pytest
import torch
import torch.nn.functional as F

from lico_tune.models import (ImageClassifier, PromptLearner, TextEncoderMissing, TextFeatures,
                              build_classifier, build_prompt_learner)
from lico_tune.models.text import TextEncoderCorrupt
from lico_tune.spec import ModelConfig, TextConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- backbones

@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("backbone,size,hw", [
    ("tiny_cnn", 28, 7), ("tiny_cnn", 8, 2), ("wrn28_2", 32, 8), ("wrn28_2", 28, 7), ("wrn28_8", 32, 8),
    ("resnet18_cifar", 32, 4), ("resnet18_cifar", 28, 4), ("resnet50", 64, 2)])
def test_backbone(backbone, size, hw, in_channels):
    torch.manual_seed(0)
    model = build_classifier(ModelConfig(backbone=backbone), num_classes=7, in_channels=in_channels).eval()
    assert isinstance(model, ImageClassifier)
    x = torch.randn(2, in_channels, size, size)
    captured = {}
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: captured.setdefault("F", o.detach().clone()))
    with torch.no_grad():
        logits, fmap, emb = model.forward_all(x)
        handle.remove()
        assert logits.shape == (2, 7)
        assert fmap.shape == (2, model.feature_dim, hw, hw) and hw > 1
        assert emb.shape == (2, model.feature_dim)
        assert torch.allclose(emb, fmap.mean(dim=(2, 3)))
        assert torch.allclose(model(x), logits, atol=1e-6)
        assert torch.allclose(model.features(x), fmap, atol=1e-6)
        assert torch.allclose(captured["F"], fmap)  # cam_layer's output is F
    assert model.feature_shape(in_channels, size) == (model.feature_dim, hw, hw)
    assert model.training is False  # feature_shape restores the mode
    assert not any(k.startswith("cam_layer") for k in model.state_dict())


def test_backbone_init_and_dropout():
    model = build_classifier(ModelConfig(backbone="wrn28_2", dropout=0.5), 10, 3)
    assert torch.all(model.fc.bias == 0)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(torch.all(m.weight == 1) for m in bns)
    assert model.dropout.p == 0.5
    with pytest.raises(ValueError):
        build_classifier(ModelConfig(backbone="tiny_cnn"), 10, 2)


# ----------------------------------------------------------------------------- MiniLM (Hugging Face)

def _hf(**kw) -> PromptLearner:
    kw.setdefault("n_ctx", 4)
    names = kw.pop("names", FASHION)
    return build_prompt_learner(TextConfig(**{"encoder": "hf", "model": "minilm", **kw}), names)


@pytest.mark.parametrize("features,n_points,position", [
    ("eot", 1, "end"), ("per_token", 5, "end"), ("rolled", 4, "end"), ("per_token", 5, "middle"),
    ("rolled", 4, "front")])
def test_hf_shapes(features, n_points, position):
    pl = _hf(features=features, class_token_position=position, names=FASHION[:3])
    out = pl()
    assert isinstance(out, TextFeatures)
    assert pl.dim == 384 and pl.n_points == n_points
    assert out.points.shape == (3, n_points, 384) and out.pooled.shape == (3, 384)
    # text.pooled null: the first copy for 'rolled' (released HEAD reads copy 0), the mean otherwise
    want = out.points[:, 0] if features == "rolled" else out.points.mean(1)
    assert torch.allclose(out.pooled, want, atol=1e-6)
    assert pl.ids.shape[1] == int(pl.lengths.max())  # padded only to the longest prompt


def test_hf_grad_reaches_ctx_not_frozen_encoder():
    pl = _hf(features="rolled", names=FASHION[:3]).train()
    assert not pl.encoder.training  # a frozen encoder stays in eval mode
    assert [n for n, p in pl.named_parameters() if p.requires_grad] == ["ctx"]
    pl().pooled.pow(2).sum().backward()
    assert pl.ctx.grad is not None and pl.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in pl.encoder.parameters())


def test_hf_finetune_trains_encoder():
    pl = _hf(features="eot", finetune=True, names=FASHION[:2]).train()
    assert pl.encoder.training
    assert all(p.requires_grad for p in pl.encoder.parameters())
    pl().pooled.sum().backward()
    assert pl.encoder.get_input_embeddings().weight.grad is not None
    assert pl.ctx.grad is not None


@pytest.mark.parametrize("position,texts", [
    ("end", ["a photo of a cat.", "a photo of a kitten.", "a photo of a airplane."]),
    ("middle", ["a photo cat of a.", "a photo kitten of a.", "a photo airplane of a."]),
    ("front", ["cat a photo of a.", "kitten a photo of a.", "airplane a photo of a."])])
def test_hf_inputs_embeds_path_equals_plain_forward(position, texts):
    """Word-initialised context == the real words: our path must reproduce tokenizer + model."""
    from transformers import AutoTokenizer

    from lico_tune.models.text.hf import minilm_dir
    pl = _hf(names=["cat", "kitten", "airplane"], ctx_init="a photo of a", features="eot",
             class_token_position=position).eval()
    assert pl.n_ctx == 4
    with torch.no_grad():
        ours = pl().pooled
        tok = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
        batch = tok(texts, padding=True, return_tensors="pt")
        ids = pl.ids.clone()  # our layout with the context slots filled by the phrase's tokens
        ids.scatter_(1, pl.ctx_pos, torch.tensor(tok("a photo of a", add_special_tokens=False)["input_ids"]).expand(3, -1))
        assert torch.equal(ids, batch["input_ids"])
        hidden = pl.encoder(**batch).last_hidden_state
        m = batch["attention_mask"][..., None].float()
        ref = (hidden * m).sum(1) / m.sum(1)
    assert torch.allclose(ours, ref, atol=1e-5)
    if position == "end":  # the encoder is the real MiniLM
        e = F.normalize(ours, dim=-1)
        assert e[0] @ e[1] > e[0] @ e[2] + 0.1  # cat is closer to kitten than to airplane


def test_hf_missing_model():
    with pytest.raises(TextEncoderMissing, match="no-such-org/no-such-model"):
        _hf(model="no-such-org/no-such-model")


# ----------------------------------------------------------------------------- open_clip

def _clip(**kw) -> PromptLearner:
    names = kw.pop("names", FASHION)
    truncate = kw.pop("truncate", True)
    return build_prompt_learner(TextConfig(encoder="open_clip", model="tiny-clip", **kw), names,
                                truncate=truncate)


def _reference_clip(pl):
    """A full open_clip CLIP of the tiny config carrying the learner's text weights."""
    import open_clip

    from lico_tune.models.text.openclip import TINY_CLIP
    ref = open_clip.CLIP(**TINY_CLIP).eval()
    missing, unexpected = ref.load_state_dict(pl.encoder.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("visual.") or k.startswith("logit") for k in missing)
    return ref, open_clip.get_tokenizer("ViT-B-32")


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("position,fmt", [("end", "a photo of a {}."), ("middle", "a photo {} of a."),
                                          ("front", "{} a photo of a.")])
def test_open_clip_equals_encode_text(position, fmt, truncate):
    names = ["cat", "golden retriever", "T-shirt/top"]
    torch.manual_seed(0)
    pl = _clip(names=names, ctx_init="a photo of a", features="eot", class_token_position=position,
               truncate=truncate).eval()
    assert pl.truncated == truncate and pl.ids.shape[1] == (int(pl.lengths.max()) if truncate else 77)
    ref, tok = _reference_clip(pl)
    with torch.no_grad():
        ours = pl().pooled
        theirs = ref.encode_text(tok([fmt.format(n) for n in names]))
    assert ours.shape == (3, 64)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_open_clip_rolled_equals_encode_text_of_rolled_words():
    words = ["a", "photo", "of", "the"]
    pl = _clip(names=["cat", "dog"], ctx_init=" ".join(words), features="rolled").eval()
    ref, tok = _reference_clip(pl)
    texts = [" ".join(words[-m:] + words[:-m] if m else words) + f" {n}." for n in ["cat", "dog"] for m in range(4)]
    with torch.no_grad():
        ours = pl().points  # (2, 4, 64)
        theirs = ref.encode_text(tok(texts)).view(2, 4, 64)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("features,n_points", [("eot", 1), ("per_token", 13), ("rolled", 12)])
def test_open_clip_shapes_and_grad(features, n_points):
    pl = _clip(n_ctx=12, features=features).train()
    out = pl()
    assert out.points.shape == (10, n_points, 64) and out.pooled.shape == (10, 64)
    out.pooled.sum().backward()
    assert pl.ctx.grad is not None and pl.ctx.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in pl.encoder.parameters())


def test_open_clip_checkpoint_file(tmp_path):
    import open_clip

    from lico_tune.models.text.openclip import TINY_CLIP
    torch.manual_seed(1)
    ref = open_clip.CLIP(**TINY_CLIP).eval()
    path = tmp_path / "tiny.pt"
    torch.save(ref.state_dict(), path)
    pl = _clip(names=["cat"], ctx_init="a photo of a", features="eot", pretrained=str(path))
    with torch.no_grad():
        theirs = ref.encode_text(open_clip.get_tokenizer("ViT-B-32")(["a photo of a cat."]))
        assert torch.allclose(pl().pooled, theirs, atol=1e-5)


def test_open_clip_missing_or_corrupt_weights(tmp_path):
    with pytest.raises(TextEncoderMissing, match="/nonexistent.pt"):
        _clip(pretrained="/nonexistent.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(TextEncoderCorrupt, match="could not be read") as err:
        _clip(pretrained=str(bad))
    assert str(bad) in str(err.value)
    # A tag whose weights are not cached: no download, a clear error naming open_clip's cache.
    with pytest.raises(TextEncoderMissing, match="could not be fetched"):
        build_prompt_learner(TextConfig(encoder="open_clip", model="ViT-B-32", pretrained="openai"), ["cat"])


# ----------------------------------------------------------------------------- context options

def test_shuffle_ctx_permutes_the_same_vectors():
    pl = _clip(n_ctx=8, features="rolled", shuffle_ctx=True).train()
    torch.manual_seed(0)
    a, b = pl.context_vectors(), pl.context_vectors()
    assert not torch.equal(a, b)
    key = lambda t: t[0].sort(dim=0).values  # noqa: E731
    assert torch.equal(key(a), key(b)) and torch.equal(key(a), pl.ctx.detach().sort(dim=0).values)
    with torch.no_grad():
        assert not torch.allclose(pl().points, pl().points)
        pl.eval()
        assert torch.equal(pl.context_vectors()[0], pl.ctx)  # no shuffling at evaluation
        assert torch.allclose(pl().points, pl().points)


def test_class_specific_and_word_init():
    pl = _clip(n_ctx=6, class_specific=True, features="eot")
    assert pl.ctx.shape == (10, 6, 64) and pl.ctx.numel() == 10 * 6 * 64
    shared = _clip(n_ctx=6, features="eot")
    assert shared.ctx.shape == (6, 64)
    assert 0.01 < shared.ctx.std() < 0.03  # normal(std=0.02)
    init = _clip(ctx_init="a photo of a", class_specific=True, features="eot")
    assert init.n_ctx == 4 and init.ctx.shape == (10, 4, 64)
    import open_clip
    phrase = torch.tensor(open_clip.SimpleTokenizer().encode("a photo of a"))
    assert torch.equal(init.ctx[3], init.encoder.token_embedding.weight[phrase])
    with pytest.raises(ValueError, match="over the limit"):
        _clip(n_ctx=64, names=["a very " * 10 + "long name"])
