"""text.precision and eval.precision: the autocast dtype really reaches the text tower and the
insertion/deletion forwards, and the results stay close to fp32."""
from __future__ import annotations

import pytest
import torch

from lico_tune.models import build_classifier, build_prompt_learner
from lico_tune.models.lico import LicoModel
from lico_tune.saliency import insertion_deletion
from lico_tune.spec import LicoConfig, ModelConfig, TextConfig

NAMES = ["cat", "dog", "ship", "truck"]


def _dtypes_of(module):
    """Record the output dtypes of module's forwards."""
    seen = []
    module.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return seen


@pytest.mark.parametrize("precision,expected", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_text_precision_reaches_the_text_tower(precision, expected):
    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(backbone="tiny_cnn"), len(NAMES), 3)
    text = TextConfig(encoder="open_clip", model="tiny-clip", n_ctx=3, features="rolled", precision=precision)
    model = LicoModel(classifier, build_prompt_learner(text, NAMES), LicoConfig(),
                      classifier.feature_shape(3, 16), text.proj_hidden, text.proj_dropout).train()
    seen = _dtypes_of(model.prompts.encoder.transformer.resblocks[0].mlp.c_fc)
    x, y = torch.randn(4, 3, 16, 16), torch.arange(4)
    # inside a bf16 training step, text.precision fp32 switches autocast off for the text tower
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "fp32"):
        logits, terms = model(x, y)
    assert seen and set(seen) == {expected}
    loss, _ = model.loss(logits, y, terms)
    loss.backward()
    assert torch.isfinite(loss) and model.prompts.ctx.grad.abs().sum() > 0

    with torch.no_grad():  # bf16 text features close to the fp32 ones
        ref = model.prompts().points
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.prompts().points
    assert low.dtype == torch.bfloat16 and not torch.equal(low.float(), ref)
    assert torch.allclose(low.float(), ref, atol=0.05 * ref.abs().max().item())


def test_eval_precision_bf16_curves_close_to_fp32():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))
    seen = _dtypes_of(model[0])
    x, sal, y = torch.randn(3, 3, 8, 8), torch.rand(3, 8, 8), torch.tensor([0, 1, 2])
    full = insertion_deletion(model, x, sal, y, pixels_per_step=8, batch_size=16)
    assert set(seen) == {torch.float32}
    seen.clear()
    low = insertion_deletion(model, x, sal, y, pixels_per_step=8, batch_size=16, precision="bf16")
    assert set(seen) == {torch.bfloat16}
    assert low["insertion_curve"].dtype == torch.float32
    for k in ("insertion_curve", "deletion_curve"):
        assert torch.allclose(low[k], full[k], atol=0.02), k
