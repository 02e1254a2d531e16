"""scripts/gpu_mm_dose/mm_dose_gpu.py (issue 32, item 7): the copies it carries to a GPU machine (MM,
the temperature forms, WRN-28-2, the dose probe) equal lico-tune's own, its constants are the spec's,
and a tiny run on synthetic data in the carried layout goes through on the CPU. Not e2e: nothing is
started; the real carried folder (scripts/gpu_mm_dose/prepare.py writes it, git-ignored) is never needed."""
import gzip
import hashlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lico_tune.data.registry import REGISTRY
from lico_tune.losses import mm_loss
from lico_tune.models.backbones import build_classifier
from lico_tune.models.temperature import Temperature
from lico_tune.spec import MMConfig, ModelConfig, TrainConfig, load_spec
from lico_tune.train.health import gradient_norms

from conftest import assert_refused

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_mm_dose" / "mm_dose_gpu.py"
_spec = importlib.util.spec_from_file_location("mm_dose_gpu", SCRIPT)
gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu)

pytestmark = pytest.mark.usefixtures("one_thread")

# lico.mm for the two arms, as the spec reads them
DIVISOR = MMConfig()  # the spec default: the HEAD's learnable divisor 2.659, shared
STABILISED = load_spec(REPO / "search_spaces" / "study_language.yaml").base.lico.mm  # tau 0.3, target 0.3


def _script_temperature(cfg: MMConfig):
    return gpu.Temperature(cfg.temperature_form, cfg.temperature, cfg.temperature_min, cfg.temperature_max,
                           cfg.target_temperature)


@pytest.mark.parametrize("cfg", [DIVISOR, STABILISED], ids=["divisor_shared", "exp_with_target"])
@pytest.mark.parametrize("sign,distance", [("negative", "euclidean"), ("positive", "squared")])
def test_mm_copy_equals_lico_tune_value_and_gradients(cfg, sign, distance):
    """Both temperature forms: the same loss and the same gradients (image side, text side, tau)."""
    g = torch.Generator().manual_seed(3)
    img, txt = torch.randn(32, 128, generator=g), torch.randn(10, 384, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    y[1] = y[0]  # two samples of one class: a text distance of 0 (the clamp's branch)
    results = []
    for temp, loss in ((Temperature(cfg), mm_loss), (_script_temperature(cfg), gpu.mm_loss)):
        e, t = img.clone().requires_grad_(), txt.clone().requires_grad_()
        target = temp.target_tau() if isinstance(temp, Temperature) else temp.target
        value = loss(e, t[y], temp(), sign=sign, distance=distance, target_temperature=target)
        value.backward()
        tau_grad = next(temp.parameters()).grad
        results.append((value.detach(), e.grad, t.grad, tau_grad, temp().detach()))
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)
    assert results[0][0] > 0 and results[0][3].abs() > 0  # the comparison is not of zeros


@pytest.mark.parametrize("cfg", [DIVISOR, STABILISED], ids=["divisor", "exp"])
@pytest.mark.parametrize("raw", [-5.0, 0.5, 50.0])
def test_temperature_copy_equals_lico_tune_inside_and_outside_its_bounds(cfg, raw):
    theirs, ours = Temperature(cfg), _script_temperature(cfg)
    with torch.no_grad():  # move the parameter, past the bounds where there are bounds
        for t in (theirs, ours):
            next(t.parameters()).fill_(raw if cfg.temperature_form == "divisor" else math.log(abs(raw)))
    assert torch.equal(theirs(), ours())
    if cfg.temperature_max is not None and raw == 50.0:
        assert ours().item() == pytest.approx(cfg.temperature_max)


def test_wrn_copy_has_lico_tunes_weights_and_outputs_at_one_seed():
    torch.manual_seed(5)
    theirs = build_classifier(ModelConfig(backbone="wrn28_2"), 10, 1)
    torch.manual_seed(5)
    ours = gpu.WRN28()
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b) and len(a) > 100
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same init, parameter by parameter
    x = torch.randn(4, 1, 28, 28)
    for mode in (True, False):
        theirs.train(mode), ours.train(mode)
        for p, q in zip(theirs.forward_all(x), ours.forward_all(x)):
            assert torch.equal(p, q)
    assert ours.forward_all(x)[1].shape == (4, 128, 7, 7)  # F of WRN-28-2 on 28 px


def test_dose_probe_equals_health_gradient_norms():
    torch.manual_seed(0)
    model = gpu.WRN28()
    logits, fmap, emb = model.forward_all(torch.randn(16, 1, 28, 28))
    y = torch.arange(16) % 10
    ce = torch.nn.functional.cross_entropy(logits, y)
    mm = 10.0 * gpu.mm_loss(emb, torch.randn(10, 384)[y], 0.3, sign="negative", distance="euclidean")
    ours = gpu.gradient_norms([ce, mm], fmap)
    theirs = gradient_norms([ce, mm, None], fmap)  # health's (ce, mm, ot) with OT off
    assert torch.equal(ours, theirs[:2]) and theirs[2] == 0 and ours.min() > 0


def test_constants_are_the_specs():
    """alpha, both arms' temperatures, the recipe and the normalisation come from where lico-tune
    keeps them; a change there must reach the script."""
    study = load_spec(REPO / "search_spaces" / "study_language.yaml").base
    assert gpu.ALPHA == study.lico.alpha
    for arm, cfg in (("mm_divisor", DIVISOR), ("mm_tau0.3", STABILISED)):
        assert gpu.ARMS[arm] == {"form": cfg.temperature_form, "tau": cfg.temperature, "lo": cfg.temperature_min,
                                 "hi": cfg.temperature_max, "target": cfg.target_temperature}
        assert (gpu.SIGN, gpu.DISTANCE, gpu.TAU_WEIGHT_DECAY) == (cfg.sign, cfg.distance, cfg.temperature_weight_decay)
    assert gpu.ARMS["mm_divisor"]["tau"] == gpu.HEAD_DIVISOR == 2.659 and gpu.ARMS["ce"] is None
    t = study.train
    assert (gpu.LR, gpu.WEIGHT_DECAY, gpu.BATCH, gpu.MOMENTUM) == (t.lr, t.weight_decay, t.batch_size, t.momentum)
    assert not TrainConfig().nesterov and t.schedule == "cosine" and t.warmup_epochs == 0 and not study.data.augment
    info = REGISTRY["fashion_mnist"]
    assert ((gpu.MEAN,), (gpu.STD,)) == (info.mean, info.std)


# ----------------------------------------------------------------------------- the script as a whole


def _idx_gz(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def carried(tmp_path) -> Path:
    """A folder in the carried layout: synthetic images (24 train, 12 test) and random features."""
    d = tmp_path / "carry"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 12)):
        images, labels = gpu.DATA_FILES[split]
        _idx_gz(d / images, rng.integers(0, 256, (n, 28, 28)))
        _idx_gz(d / labels, np.arange(n) % 10)
    np.save(d / gpu.FEATURES, rng.standard_normal((10, 384)).astype(np.float32), allow_pickle=False)
    digest = hashlib.sha256((d / gpu.FEATURES).read_bytes()).hexdigest()
    (d / gpu.FEATURES_INFO).write_text(json.dumps({"sha256": digest}))
    return d


def test_a_tiny_run_logs_every_arm_and_epoch(carried, tmp_path, capsys):
    out = tmp_path / "out"
    rc = gpu.main(["--device", "cpu", "--data", str(carried), "--out", str(out), "--epochs", "2",
                   "--train-subset", "16", "--test-subset", "8", "--minutes", "30"])
    assert rc == 0
    lines = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["arm"], r["epoch"]) for r in lines] == [(a, e) for e in (1, 2) for a in gpu.ARMS]
    by_arm = {r["arm"]: r for r in lines if r["epoch"] == 1}
    assert by_arm["ce"]["dose"] is None and by_arm["ce"]["tau"] is None
    assert by_arm["mm_divisor"]["dose0"] > 0 and by_arm["mm_tau0.3"]["tau_target"] == pytest.approx(0.3)
    assert by_arm["mm_divisor"]["tau"] != 2.659  # the divisor is learnable: it moved
    assert all(0 <= r["test_acc"] <= 100 and math.isfinite(r["loss_ce"]) for r in lines)
    run = json.loads((out / "run.json").read_text())
    assert "not the full LICO arm" in run["note"] and run["plan"] == {"epochs": 2, "from": "--epochs"}
    assert "mm_tau0.3" in (out / "table.txt").read_text() and "all 2 planned epochs ran" in capsys.readouterr().out


def test_refusals_name_the_problem_and_keep_what_is_there(carried, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "log.jsonl").write_text("earlier results\n")
    cases = [(["--out", str(busy), "--data", str(carried)], "--out"),
             (["--out", str(tmp_path / "a"), "--arms", "ce,lico"], "--arms"),
             (["--out", str(tmp_path / "b"), "--minutes", "0"], "--minutes"),
             (["--out", str(tmp_path / "c"), "--data", str(tmp_path / "nowhere")], "prepare.py")]
    (carried / gpu.FEATURES_INFO).write_text(json.dumps({"sha256": "0" * 64}))
    cases.append((["--out", str(tmp_path / "d"), "--data", str(carried)], "sha256"))
    for argv, culprit in cases:
        with pytest.raises(SystemExit) as exc:
            gpu.main(["--device", "cpu", *argv])
        err = capsys.readouterr().err
        assert_refused((exc.value.code, err), culprit)
    assert (busy / "log.jsonl").read_text() == "earlier results\n"
