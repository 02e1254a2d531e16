"""The shared-prefix path of the open_clip learner (lico_tune/models/text/prefix.py) gives the
plain forward's features and context gradients, and is only taken where the prefix is shared."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from lico_tune.models import build_prompt_learner
from lico_tune.models.text import PromptLearner
from lico_tune.models.text.openclip import TINY_CLIP
from lico_tune.spec import TextConfig

# Names of 1-4 BPE tokens, so suffixes have different lengths and padding.
NAMES = ["cat", "golden retriever", "T-shirt/top", "aquarium_fish", "maple tree"]


def _learner(**kw):
    truncate = kw.pop("truncate", True)
    torch.manual_seed(0)
    cfg = TextConfig(encoder="open_clip", model=kw.pop("model", "tiny-clip"), **kw)
    return build_prompt_learner(cfg, NAMES, truncate=truncate)


def _both(pl, seed=0):
    """(features, grads) of the shared-prefix forward and of the plain one, same random weights R."""
    out = {}
    for name, fwd in (("shared", pl.forward), ("plain", lambda: PromptLearner.forward(pl))):
        pl.zero_grad(set_to_none=True)
        torch.manual_seed(seed)  # the same shuffle of the context, if any
        feats = fwd()
        r = torch.randn(feats.points.shape, generator=torch.Generator().manual_seed(1))
        ((feats.points * r).sum() + feats.pooled.square().sum()).backward()
        grads = {n: p.grad.clone() for n, p in pl.named_parameters() if p.grad is not None}
        out[name] = (feats, grads)
    return out["shared"], out["plain"]


def _assert_same(shared, plain):
    (fs, gs), (fp, gp) = shared, plain
    assert fs.points.shape == fp.points.shape
    assert torch.allclose(fs.points, fp.points, atol=1e-5, rtol=0)
    assert torch.allclose(fs.pooled, fp.pooled, atol=1e-5, rtol=0)
    assert gs.keys() == gp.keys() and "ctx" in gs
    for n in gs:
        scale = gp[n].abs().max().clamp_min(1e-3)
        assert torch.allclose(gs[n], gp[n], atol=1e-5 * scale, rtol=0), n
    assert gs["ctx"].abs().sum() > 0


@pytest.mark.parametrize("features", ["eot", "per_token", "rolled"])
@pytest.mark.parametrize("truncate", [True, False])
def test_shared_prefix_equals_plain_forward(features, truncate):
    pl = _learner(n_ctx=4, features=features, truncate=truncate).train()
    assert pl.prefix_len == 5  # [SOS] + 4 context slots
    _assert_same(*_both(pl))


def test_shared_prefix_word_init_shuffle_and_finetune():
    """Word-initialised context, the order shuffled every step, and the encoder trained too: the
    encoder's own weight gradients agree as well."""
    pl = _learner(ctx_init="a photo of a", features="rolled", shuffle_ctx=True, finetune=True).train()
    assert pl.prefix_len == 5
    shared, plain = _both(pl, seed=3)
    assert any(n.startswith("encoder.transformer") for n in shared[1])
    _assert_same(shared, plain)


def test_shared_prefix_layer_scale_tower(tmp_path):
    """A tower with layer scale (ls_1, ls_2) and QuickGELU."""
    cfg = copy.deepcopy(TINY_CLIP)
    cfg["text_cfg"]["ls_init_value"] = 0.5
    cfg["quick_gelu"] = True
    path = tmp_path / "ls-clip.json"
    path.write_text(json.dumps(cfg))
    for features in ("eot", "per_token", "rolled"):
        pl = _learner(model=str(path), n_ctx=3, features=features).train()
        assert type(pl.encoder.transformer.resblocks[0].ls_1).__name__ == "LayerScale"
        assert pl.prefix_len == 4
        _assert_same(*_both(pl))


@pytest.mark.parametrize("features", ["eot", "per_token", "rolled"])
@pytest.mark.parametrize("kind", [dict(class_specific=True), dict(class_token_position="front"),
                                  dict(class_token_position="middle")])
def test_unshared_prefix_takes_the_plain_path(features, kind):
    """Class-specific context or the class name before/inside the context: nothing is shared."""
    pl = _learner(n_ctx=4, features=features, **kind).train()
    assert pl.prefix_len is None
    _assert_same(*_both(pl))


def test_shared_prefix_can_be_switched_off():
    pl = build_prompt_learner(TextConfig(encoder="open_clip", model="tiny-clip", n_ctx=2), NAMES,
                              shared_prefix=False)
    assert pl.prefix_len is None
