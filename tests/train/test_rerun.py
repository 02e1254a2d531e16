"""Bit-identical reruns: two CPU runs of one trial with default settings give the same checkpoint
tensor for tensor, `lico-tune rerun` says so (and names what differs when a record is altered),
for a `lico-tune train` directory and for a real Ray Tune trial directory; provenance records
what the issue lists."""
import copy
import json
import re
import shutil

import pytest
import torch
import yaml

from lico_tune.train.checkpoint import load_checkpoint, save_checkpoint
from lico_tune.cli import main
from lico_tune.compute import resolve_determinism as resolve
from lico_tune.train.rerun import compare, find_record
from lico_tune.spec import validate_trial
from lico_tune.train import train_trial

pytest_plugins = ["results_fixtures"]


def tiny(tree, **train):
    tree = copy.deepcopy(tree)
    tree["train"].update(steps_per_epoch=3, epochs=2, **train)
    tree["eval"].update(n_images=8, gallery_images=0)
    return validate_trial(tree)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trial trained once with default determinism settings (digits, tiny CNN + MiniLM)."""
    from conftest import TINY_TRIAL
    d = tmp_path_factory.mktemp("rec") / "run"
    train_trial(tiny(TINY_TRIAL), d)
    return d


def test_defaults_resolve_to_deterministic_one_thread_on_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve(None, None, cpu) == (True, 1)
    assert resolve(None, None, cuda) == (False, None), "CUDA trials are not forced deterministic by default"
    assert resolve(None, 4, cpu) == (True, 4) and resolve(False, None, cpu) == (False, None)


def test_two_cpu_runs_with_default_settings_are_bit_identical(trained, tmp_path, tiny_trial_tree):
    train_trial(tiny(tiny_trial_tree), tmp_path / "b")
    a, b = load_checkpoint(trained), load_checkpoint(tmp_path / "b")
    c = compare(a, b)
    assert c.match, (c.tensor_diffs[:5], c.metric_diffs[:5], c.state_diffs[:5])
    n_model = sum(torch.is_tensor(v) for v in a["model"].values())
    assert c.tensors > n_model >= 10, "model, optimiser, EMA and RNG tensors were all compared"
    assert c.metrics >= 20 and "test/acc" in a["history"][-1]
    # What ran is recorded: 1 thread, deterministic algorithms, and the rest of the provenance.
    env = a["environment"]
    assert env["determinism"]["threads"] == 1 and env["determinism"]["deterministic_algorithms"] is True
    assert {"python", "torch", "torchvision", "numpy", "transformers", "open_clip", "ray", "optuna"} <= set(
        env["versions"]) and env["versions"]["torch"] == torch.__version__.split("+")[0]
    assert len(env["dataset"]["sha256"]) == 64 and env["dataset"]["name"] == "digits"
    assert len(env["text_weights"]["sha256"]) == 64, "MiniLM's weight file is checksummed"
    assert env["hardware"]["cpu"] and "cudnn" in env["hardware"] and "gpu" in env["hardware"]
    assert isinstance(a["git_dirty"], bool) or a["git_dirty"] is None


def test_rerun_of_a_train_directory_matches_and_names_an_altered_tensor(trained, tmp_path, capsys):
    assert main(["rerun", str(trained), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "match: all" in out and "bit-identical" in out

    altered = tmp_path / "altered"
    shutil.copytree(trained, altered)
    state = load_checkpoint(altered)
    name = next(k for k, v in state["model"].items() if torch.is_tensor(v) and v.is_floating_point())
    state["model"][name] = state["model"][name].clone()
    state["model"][name].view(-1)[0] += 1e-6          # one value, one millionth
    state["history"][-1]["test/acc"] += 0.5
    save_checkpoint(state, altered / "checkpoint.pt")
    assert main(["rerun", str(altered), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: 1 of" in out and f"tensor model.{name}: max |diff|" in out
    assert "metric history.1.test/acc" in out


def test_rerun_refuses_what_is_not_a_record(trained, tmp_path, capsys):
    assert main(["rerun", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["rerun", str(tmp_path)]) == 2
    assert "is not a trial record" in capsys.readouterr().err
    (tmp_path / "trial_spec.yaml").write_text("train: {epochs: 1}\n")
    assert main(["rerun", str(tmp_path)]) == 2
    assert "neither checkpoint_*/checkpoint.pt nor metrics.json" in capsys.readouterr().err
    (tmp_path / "checkpoint_000000").mkdir()
    shutil.copy2(trained / "checkpoint.pt", tmp_path / "checkpoint_000000" / "checkpoint.pt")
    (tmp_path / "trial_spec.yaml").write_text("train: {epochs: 0}\n")
    assert main(["rerun", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "trial_spec.yaml is not a valid trial config" in err and "Traceback" not in err


def test_rerun_of_a_ray_trial_directory_matches(results_root, capsys):
    """A finished trial of the session's real sweep (trial_spec.yaml + checkpoint_*/ from the
    Ray trainable), rerun without Ray."""
    trial = sorted((results_root / "ablation-smoke").glob("trial_*_lico"))[0]
    rec = find_record(trial)
    assert rec.kind == "ray" and rec.epoch == 2 and rec.config == validate_trial(
        yaml.safe_load((trial / "trial_spec.yaml").read_text()))
    assert main(["rerun", str(trial), "--quiet"]) == 0
    m = re.search(r"match: all (\d+) checkpoint tensors and (\d+) metric values", capsys.readouterr().out)
    assert m and int(m[1]) >= 20 and int(m[2]) >= 20, "model, optimiser, EMA, RNG and both epochs' metrics"


def test_rerun_of_a_copy_without_weights_compares_the_metrics(results_root, tmp_path, capsys):
    """A published copy (docs/study/results: no checkpoint.pt) is a metrics-only record: a match
    says so, an altered metric is named, a damaged metrics.json is a one-paragraph error."""
    trial = sorted((results_root / "ablation-smoke").glob("trial_*_lico"))[0]
    published = tmp_path / trial.name
    shutil.copytree(trial, published, ignore=shutil.ignore_patterns("*.pt"))
    rec = find_record(published)
    assert rec.metrics_only and rec.epoch == 2 and rec.checkpoint == published / "metrics.json"
    assert main(["rerun", str(published), "--quiet"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"match: (\d+) metric values are bit-identical \(the record has no weights", out)
    assert m and int(m[1]) >= 20, out
    final = json.loads((published / "metrics.json").read_text())
    final["history"][0]["train/ce"] += 1e-6
    (published / "metrics.json").write_text(json.dumps(final))
    assert main(["rerun", str(published), "--quiet"]) == 1
    assert "metric history.0.train/ce" in capsys.readouterr().out
    (published / "metrics.json").write_text("{\"epoch\": 2")
    assert main(["rerun", str(published)]) == 2
    err = capsys.readouterr().err
    assert "metrics.json is damaged" in err and "Traceback" not in err


def test_rerun_warns_when_the_record_ran_on_other_cpu_instruction_sets():
    """Same model name, other kernels: a rerun of a 32-step study trial on another EPYC VM differed in
    the 7th digit of the untrained model's MM. The record names its instruction sets; rerun says when
    they differ, and when an older record does not name them."""
    from pathlib import Path

    from lico_tune.provenance import hardware, versions
    from lico_tune.train.rerun import Record, warnings_for
    from lico_tune.spec import TrialConfig
    now = hardware()

    def record(hw: dict) -> Record:
        env = {"versions": versions(), "hardware": hw, "determinism": {"deterministic_algorithms": True}}
        return Record(TrialConfig(), Path("x"), 1, "train", {"environment": env})
    assert warnings_for(record(now)) == []
    other = warnings_for(record({**now, "cpu_capability": "AVX2"}))
    assert len(other) == 1 and "other CPU instruction sets" in other[0] and "AVX2 -> " in other[0]
    old = {k: v for k, v in now.items() if k not in ("cpu_capability", "cpu_flags")}
    assert any("does not name its CPU's instruction sets" in w for w in warnings_for(record(old)))
