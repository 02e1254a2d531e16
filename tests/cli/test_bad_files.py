"""The bad-input corpus (issue 11), files: damaged checkpoints (for explain, rerun and train) and
damaged result roots (for report, resume and index). The same rule and harness as test_bad_input.py:
exit 2, one paragraph naming the file, no traceback, every file unchanged, Ray never reached."""
from __future__ import annotations

from pathlib import Path

import pytest

from test_bad_input import VALID, check_refused, ws  # noqa: F401  (ws: the in-process workspace fixture)


# ----------------------------------------------------------------------------- checkpoints


def _good_state():
    import torch
    from lico_tune.spec import TrialConfig
    g = torch.Generator().manual_seed(0)
    cfg = TrialConfig.model_validate(VALID["base"]).model_dump(mode="json")
    return {"model": {"classifier.fc.weight": torch.randn(10, 64, generator=g),
                      "classifier.fc.bias": torch.zeros(10)}, "ema": None, "epoch": 1, "config": cfg, "history": []}


def _flip_weight_byte(path: Path) -> None:
    """Flip one byte inside the stored weight tensor (torch keeps tensors as raw zip entries)."""
    import torch
    data = bytearray(path.read_bytes())
    w = _good_state()["model"]["classifier.fc.weight"].numpy().tobytes()
    at = data.find(w)
    assert at > 0, "the weight tensor's bytes are not stored verbatim"
    data[at + 100] ^= 0x10
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["model"]["classifier.fc.weight"].numel() == 640  # still loads


def _make_checkpoint(kind: str, path: Path) -> None:
    import io
    import pickle
    import torch
    from lico_tune.train.checkpoint import save_checkpoint
    state = _good_state()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated":
        save_checkpoint(state, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "tensor-only":
        torch.save(torch.zeros(3), path)
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "no-config":
        torch.save({k: v for k, v in state.items() if k != "config"}, path)
    elif kind == "invalid-config":
        torch.save({**state, "config": {"train": {"epochs": 0}}}, path)
    elif kind == "config-not-a-dict":
        torch.save({**state, "config": "lico"}, path)
    elif kind == "model-not-a-dict":
        torch.save({**state, "model": 5}, path)
    elif kind == "flipped-weight-byte":
        save_checkpoint(state, path)
        _flip_weight_byte(path)
    elif kind == "pickle-with-code":
        class Evil:
            def __reduce__(self):
                return (print, ("pwned",))
        buf = io.BytesIO()
        torch.save({"model": {}, "config": state["config"], "epoch": 1, "x": Evil()}, buf, pickle_module=pickle)
        path.write_bytes(buf.getvalue())
    elif kind == "yaml-file":
        path.write_text("name: not a checkpoint\n")


CHECKPOINTS = ["empty", "random-bytes", "truncated", "tensor-only", "list", "no-config", "invalid-config",
               "config-not-a-dict", "model-not-a-dict", "flipped-weight-byte", "pickle-with-code", "yaml-file"]


@pytest.mark.parametrize("kind", CHECKPOINTS)
@pytest.mark.parametrize("command", ["explain", "rerun", "train"])
def test_damaged_checkpoint(ws, capsys, command, kind):
    run_dir = ws / "run"
    run_dir.mkdir()
    _make_checkpoint(kind, run_dir / "checkpoint.pt")
    argv = {"explain": ["explain", str(run_dir / "checkpoint.pt"), "-o", str(ws / "cwd" / "x.png")],
            "rerun": ["rerun", str(run_dir)],
            "train": ["train", str(ws / "ok.yaml"), "--out", str(run_dir), "--resume", "--quiet"]}[command]
    check_refused(ws, capsys, argv, "damaged or not a lico-tune checkpoint")


# ----------------------------------------------------------------------------- result roots


def _damaged_root(ws: Path, kind: str) -> Path:
    root = ws / f"root-{kind}"
    exp = root / "exp1"
    exp.mkdir(parents=True)
    if kind == "state-wrong-shape":
        (exp / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": {"a": 1}}')
    elif kind == "state-not-json":
        (exp / "experiment_state-2026-01-01_00-00-00.json").write_text("{not json")
    elif kind == "state-list":
        (exp / "experiment_state-2026-01-01_00-00-00.json").write_text("[1, 2, 3]")
    elif kind == "run-file-wrong-shape":
        (exp / "lico_run.yaml").write_text("spec: 3\n")
    elif kind == "run-file-binary":
        (exp / "lico_run.yaml").write_bytes(b"\xff\xfe\x00")
    elif kind == "catalog-not-a-database":
        (exp / "lico_run.yaml").write_text("spec: 3\n")
        (root / "lico-tune.db").write_text("not a database")
    return root


ROOTS = ["state-wrong-shape", "state-not-json", "state-list", "run-file-wrong-shape", "run-file-binary",
         "catalog-not-a-database"]


@pytest.mark.parametrize("kind", ROOTS)
def test_damaged_result_root_report(ws, capsys, kind):
    root = _damaged_root(ws, kind)
    check_refused(ws, capsys, ["report", str(root)], str(root))


@pytest.mark.parametrize("kind", ROOTS)
def test_damaged_experiment_resume(ws, capsys, kind):
    root = _damaged_root(ws, kind)
    check_refused(ws, capsys, ["resume", str(root / "exp1")], "exp1")


def test_index_refuses_a_catalog_that_is_not_a_database(ws, capsys):
    root = _damaged_root(ws, "catalog-not-a-database")
    check_refused(ws, capsys, ["index", str(root)], "catalog")
