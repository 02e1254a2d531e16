"""benchmarks/all.py (the GPU script) runs its smoke test on the CPU with none of the project's
other dependencies importable, and its plain-torch stand-ins equal lico-tune's models."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
# Imported now: importing POT later (via opencv's loader) puts back an older copy of sys.path.
import class_tokens  # noqa: E402
import lean  # noqa: E402

# What a bare GPU machine lacks (torch and transformers only): importing any of these fails.
BLOCKED = ["open_clip", "pydantic", "ot", "ray", "optuna", "pytorch_grad_cam", "torchvision", "quantus",
           "streamlit", "yaml", "sklearn", "scipy", "pandas"]


def test_all_smoke_test_runs_without_the_project_dependencies(tmp_path):
    out = tmp_path / "results.json"
    code = (f"import sys, runpy; sys.modules.update(dict.fromkeys({BLOCKED!r})); "
            f"sys.argv = ['all.py', '--smoke-test', '--device', 'cpu', '--out', {str(out)!r}]; "
            f"runpy.run_path({str(ROOT / 'benchmarks' / 'all.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["meta"]["smoke_test"] is True and "load average" in results["meta"]["load_before"]
    step = results["step"]
    variants = {"eot/plain", "eot/shared", "per_token/plain", "per_token/shared", "rolled/plain",
                "rolled/shared", "eot/shared/text-bf16", "rolled/shared/text-bf16"}
    for k in (10, 100):
        rows = [r for r in step if r["K"] == k]
        assert {r["variant"] for r in rows} == variants
        assert all(math.isfinite(r["lico_over_ce"]) and r["lico_over_ce"] > 0 and 0 < r["ot_share"] < 1
                   for r in rows)
        assert {r["sequences"] for r in rows if r["variant"].startswith("rolled")} == {2 * k}  # M = 2
    (sal,) = results["saliency"]
    assert sal["limit"] > 0 and sal["share_of_limit"] > 0 and sal["best_batch"] in (8, 16)
    # 2 images x 2 modes x 9 points = 36 points: 2 shared clean images, 1 all-zeros forward
    assert sal["n_steps"] == 8 and sal["forwards_run"] == 36 - 2 - 2 + 1
    assert sal["loop_max_diff"] < 1e-5 and sal["bf16_max_auc_diff"] < 0.05
    table = out.with_suffix(".md").read_text()
    assert "| 100 | rolled/shared |" in table and "share of limit" in table


def test_lean_wrn_equals_lico_tune_wrn():
    from lico_tune.models import build_classifier
    from lico_tune.spec import ModelConfig

    torch.manual_seed(0)
    ours = build_classifier(ModelConfig(backbone="wrn28_2"), 10, 3).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in ours.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    stand_in = lean.wrn28(2, 10).eval()
    stand_in.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(ours.forward_all(x), stand_in.forward_all(x)):
            assert torch.allclose(a, b, atol=1e-5)


def test_lean_clip_tower_equals_lico_tune_tower():
    from lico_tune.models.text.openclip import TINY_CLIP, ClipTextTower

    torch.manual_seed(0)
    ours = ClipTextTower(TINY_CLIP).eval()
    cfg = TINY_CLIP["text_cfg"]
    stand_in = lean.ClipTower(width=cfg["width"], layers=cfg["layers"], heads=cfg["heads"],
                              output_dim=TINY_CLIP["embed_dim"]).eval()
    stand_in.load_state_dict(ours.state_dict(), strict=True)
    embeds, eot = torch.randn(3, 9, cfg["width"]), torch.tensor([8, 5, 6])
    with torch.no_grad():
        a, ta = ours(embeds, eot, need_tokens=True)
        b, tb = stand_in(embeds, eot, need_tokens=True)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ta, tb, atol=1e-5)


@pytest.mark.parametrize("features", ["eot", "per_token", "rolled"])
def test_lean_learner_shared_prefix_equals_plain(features):
    """The GPU script's learner: shared-prefix (lico_tune's run_blocks) equals its plain forward."""

    torch.manual_seed(0)
    tower = lean.ClipTower(width=32, layers=2, heads=4, output_dim=16)
    names = list(class_tokens.CIFAR100.values())[:7]
    out = {}
    for shared in (False, True):
        torch.manual_seed(1)
        pl = lean.PromptLearner(tower, names, 3, features, shared, class_tokens.SOS, class_tokens.PERIOD,
                                class_tokens.EOS)
        points, pooled = pl()
        (points * torch.randn(points.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
        out[shared] = (points.detach(), pl.ctx.grad)
    assert out[True][0].shape == out[False][0].shape == (7, {"eot": 1, "per_token": 4, "rolled": 3}[features], 16)
    for a, b in zip(out[True], out[False]):  # values, then context gradients: to 1e-5 of their scale
        assert torch.allclose(a, b, atol=1e-5 * b.abs().max().item(), rtol=0)
    assert out[True][1].abs().sum() > 0


def test_plain_torch_resnet50_matches_torchvision_shapes(monkeypatch):
    """Without torchvision the GPU script builds its own ResNet-50: same parameter shapes, in order."""
    from torchvision.models import resnet50 as tv

    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    plain, what = lean.resnet50(10)
    assert what.startswith("plain-torch")
    ref = tv(weights=None, num_classes=10)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in ref.parameters()]
    assert plain.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_all_py_loss_options_are_the_spec_defaults():
    """benchmarks/all.py writes the spec's MM/OT defaults out (it runs without pydantic): they must agree."""
    import ast

    from lico_tune.spec import MMConfig, OTConfig
    source = (Path(__file__).resolve().parents[2] / "benchmarks" / "all.py").read_text()
    ns = {line.split(" = ")[0]: ast.literal_eval(line.split(" = ", 1)[1]) for line in source.splitlines()
          if line.startswith(("MM_KW = ", "OT_KW = "))}
    assert ns["MM_KW"] == MMConfig().model_dump(include=set(ns["MM_KW"]))
    assert ns["OT_KW"] == OTConfig().model_dump(include=set(ns["OT_KW"]))
