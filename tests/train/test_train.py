"""The single-trial trainer and the `lico-tune train|validate|schema` commands, on real data."""
import copy
import json
import math

import pytest
import torch
import yaml

from lico_tune.train.checkpoint import CheckpointError, load_checkpoint
from lico_tune.cli import main
from lico_tune.spec import validate_trial
from lico_tune.train import ResumeMismatch, TrialDiverged, build_trial, train_trial


def trial(tree, **train):
    tree = copy.deepcopy(tree)
    tree["train"].update(train)
    return validate_trial(tree)


def test_trial_trains_reports_and_writes_metrics(tmp_path, tiny_trial_tree):
    reports, logs, steps = [], [], []
    final = train_trial(trial(tiny_trial_tree, epochs=2), tmp_path, report=lambda m, c: reports.append((m, c)),
                        log=logs.append, progress=lambda step, total: steps.append((step, total)))
    assert [m["epoch"] for m, _ in reports] == [1, 2]
    assert steps == [(i, 8) for i in range(1, 9)], "progress after each of 2 x 4 steps"
    # The first report already holds every key the trial reports (Ray fixes progress.csv's columns
    # there): the saliency metrics as NaN until the last epoch computes them; history stays unpadded.
    first, last = reports[0][0], reports[1][0]
    saliency = [k for k in last if k.startswith("saliency/")]
    assert "saliency/gradcam/insertion" in saliency and "saliency/gradcam/pointing" in saliency
    assert set(first) == set(last)
    assert all(math.isnan(first[k]) for k in saliency) and not any(math.isnan(last[k]) for k in saliency)
    assert not any(k.startswith("saliency/") for k in final["history"][0])
    assert all(c == tmp_path / "checkpoint.pt" for _, c in reports)
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test/acc", "test/acc_ema", "train/ce", "train/mm", "train/ot"):
        assert key in written and written[key] == final[key]
    assert written["train/mm"] > 0 and written["train/ot"] > 0
    assert 0 <= written["test/acc"] <= 100
    assert written["config"]["data"]["name"] == "digits" and "git_sha" in written
    assert any("step 2/4" in line for line in logs) and any("done" in line for line in logs)


def test_lico_terms_train_the_prompt_and_projection(tiny_trial_tree):
    parts = build_trial(validate_trial(tiny_trial_tree))
    model = parts.model
    x, y = next(iter(torch.utils.data.DataLoader(parts.data.train, batch_size=16)))
    logits, terms = model(x, y)
    loss, _ = model.loss(logits, y, terms)
    loss.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("prompts.") for n in trained), "context vectors get no gradient"
    assert any(n.startswith("proj.") for n in trained) and "temperature.tau" in trained  # the divisor form
    assert not any(n.startswith("prompts.") and "ctx" not in n for n in trained), "frozen encoder was trained"


def test_ce_arm_skips_the_text_side(tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["lico"] = {"alpha": 0, "beta": 0}
    parts = build_trial(validate_trial(tree))
    assert parts.model.prompts is None and parts.model.proj is None


def test_same_seed_same_result(tmp_path, tiny_trial_tree):
    cfg = trial(tiny_trial_tree, steps_per_epoch=2)
    a = train_trial(cfg, tmp_path / "a")
    b = train_trial(cfg, tmp_path / "b")
    assert a["train/loss"] == b["train/loss"] and a["test/acc"] == b["test/acc"]


def test_resume_continues_and_refuses_other_spec(tmp_path, tiny_trial_tree):
    train_trial(trial(tiny_trial_tree, epochs=1), tmp_path)
    with pytest.raises(FileExistsError, match="--resume"):
        train_trial(trial(tiny_trial_tree, epochs=2), tmp_path)
    final = train_trial(trial(tiny_trial_tree, epochs=2), tmp_path, resume=True)
    assert [h["epoch"] for h in final["history"]] == [1, 2]
    assert load_checkpoint(tmp_path)["global_step"] == 8
    with pytest.raises(ResumeMismatch, match="train.lr"):
        train_trial(trial(tiny_trial_tree, epochs=3, lr=0.5), tmp_path, resume=True)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, tiny_trial_tree):
    straight = train_trial(trial(tiny_trial_tree, epochs=2, steps_per_epoch=2), tmp_path / "a")
    with pytest.raises(TrialDiverged):  # dies at the first step of epoch 2, after epoch 1's checkpoint
        train_trial(trial(tiny_trial_tree, epochs=2, steps_per_epoch=2, fail_at_step=2), tmp_path / "b")
    resumed = train_trial(trial(tiny_trial_tree, epochs=2, steps_per_epoch=2), tmp_path / "b", resume=True)
    for key in ("train/loss", "train/ce", "train/mm", "train/ot", "test/acc", "test/acc_ema"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6, abs=1e-9), key


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, tiny_trial_tree):
    cfg = trial(tiny_trial_tree, epochs=3, fail_at_step=5)
    with pytest.raises(TrialDiverged) as err:
        train_trial(cfg, tmp_path)
    assert "epoch 2, step 2" in str(err.value) and "last good checkpoint" in str(err.value)
    assert load_checkpoint(tmp_path)["epoch"] == 1
    assert not (tmp_path / "metrics.json").exists()


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path, tiny_trial_tree):
    train_trial(trial(tiny_trial_tree), tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    for key in ("model", "optimizer", "scheduler", "ema", "config", "class_names", "lico_tune_version", "git_sha"):
        assert key in ckpt
    assert ckpt["class_names"][0] == "zero"
    assert not any("encoder" in k and "ctx" not in k for k in ckpt["model"]), "frozen encoder saved"
    (tmp_path / "bad.pt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "bad.pt")


def test_cli_validate_schema_and_train(tmp_path, capsys, tiny_trial_tree):
    assert main(["validate", "search_spaces/quickstart.yaml"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: {lico: {alpah: 1}}\n")
    assert main(["validate", str(bad)]) == 2
    assert "base.lico.alpah" in capsys.readouterr().err
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "lico-tune spec"

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({"name": "tiny", "base": tiny_trial_tree}))
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--set", "train.steps_per_epoch=2"]) == 0
    assert "test/acc" in json.loads((out / "metrics.json").read_text())
    assert main(["train", str(spec), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(spec), "--out", str(tmp_path / "nan"), "--set", "train.fail_at_step=0"]) == 1
    assert "Loss became nan" in capsys.readouterr().err


def test_ema_decay_warms_up():
    from lico_tune.train import warmup_ema
    update = warmup_ema(0.999)
    ema, cur = [torch.zeros(3)], [torch.ones(3)]
    update(ema, cur, torch.tensor(1))  # decay min(0.999, 2/11): mostly the current weights
    assert torch.allclose(ema[0], torch.full((3,), 1 - 2 / 11))
    ema = [torch.zeros(3)]
    update(ema, cur, torch.tensor(100000))  # long run: the full decay
    assert torch.allclose(ema[0], torch.full((3,), 0.001))
    counts = [torch.tensor(3)]
    update(counts, [torch.tensor(7)], torch.tensor(5))
    assert counts[0].item() == 7
