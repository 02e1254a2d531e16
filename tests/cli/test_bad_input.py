"""The bad-input corpus (issue 11): specs, --set values and CLI arguments a careless or hostile user
may give (checkpoints and result roots: test_bad_files.py, with this module's harness). Every case must exit 2 with one paragraph on stderr
that names the culprit (field path or file) and says what to do, print no traceback, and leave
every file of the test's directory (specs, roots, checkpoints, the working directory) unchanged.

All cases call `lico_tune.cli.main` in-process; none reaches Ray (`lico_tune.tune` is replaced by
a module that fails the test if a case gets that far).
"""
from __future__ import annotations

import copy
import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from conftest import assert_refused, checksums
from lico_tune.cli import main

VALID = {
    "name": "corpus",
    "base": {"data": {"name": "digits", "val_fraction": 0.2}, "model": {"backbone": "tiny_cnn"},
             "text": {"encoder": "hf", "model": "minilm", "n_ctx": 4, "features": "eot"},
             "train": {"epochs": 1, "batch_size": 32, "steps_per_epoch": 2}, "eval": {"n_images": 8}},
    "search": {"space": {"train.seed": {"grid": [0, 1]}}},
    "resources": {"cpu": 1},
    "storage": "STORAGE",
}
INF, NAN = float("inf"), float("nan")

# A verb telling the user what to do (every message must hold one), or argparse's usage line.


# ----------------------------------------------------------------------------- the harness


@pytest.fixture
def ws(tmp_path, monkeypatch, tmp_path_factory):
    """A workspace: the valid spec, results roots and checkpoints; cwd inside it; HOME (the user
    cache) outside it; Ray unreachable."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LICO_TUNE_CATALOG", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    fake = types.ModuleType("lico_tune.tune")

    def _no_ray(*_a, **_k):
        raise AssertionError("a bad-input case reached Ray")
    fake.run = fake.resume = _no_ray
    monkeypatch.setitem(sys.modules, "lico_tune.tune", fake)
    # the same answer on any machine: the GPU cases must be refused on a GPU machine too
    monkeypatch.setattr("lico_tune.plan.preflight.local_resources", lambda: {"CPU": 2.0, "GPU": 0.0})
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    spec = copy.deepcopy(VALID)
    spec["storage"] = str(tmp_path / "results")
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path


def check_refused(ws: Path, capsys, argv: list[str], culprit: str) -> None:
    before = checksums(ws)
    try:
        rc = main(argv)
    except SystemExit as exc:            # argparse's own errors
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out, f"stdout of {argv}: {out}"
    assert_refused((rc, err), culprit)          # the paragraph is on stderr
    assert checksums(ws) == before, f"{argv} changed files"


def _spec_with(path: str, value) -> dict:
    spec = copy.deepcopy(VALID)
    node = spec
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return spec


def _write_spec(ws: Path, spec: dict | str | bytes, name: str = "bad.yaml") -> Path:
    p = ws / name
    if isinstance(spec, dict):
        spec = copy.deepcopy(spec)
        if spec.get("storage") == "STORAGE":
            spec["storage"] = str(ws / "results")
        spec = yaml.safe_dump(spec)
    p.write_bytes(spec if isinstance(spec, bytes) else spec.encode())
    return p


# ----------------------------------------------------------------------------- spec files

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

RAW_SPECS = [  # (id, file content, culprit)
    ("binary", b"\xff\xfe\x00\x01\x02binary", "bad.yaml"),
    ("latin1", "name: caf\xe9\n".encode("latin-1"), "UTF-8"),
    ("nul-bytes", b"name: a\x00b\n", "binary"),
    ("empty", b"", "empty"),
    ("comment-only", b"# nothing here\n# at all\n", "empty"),
    ("whitespace-only", b"\n   \n\n", "empty"),
    ("empty-mapping", b"{}\n", "empty"),
    ("top-level-list", b"- name: a\n", "mapping"),
    ("top-level-scalar", b"just a string\n", "mapping"),
    ("nested-500-brackets", ("a: " + "[" * 500 + "]" * 500 + "\n").encode(), "nested"),
    ("nested-500-maps", ("a: " + "{b: " * 500 + "1" + "}" * 500 + "\n").encode(), "nested"),
    ("billion-laughs", LAUGHS.encode(), "aliases"),
    ("recursive-alias", b"a: &a [1, *a]\n", "bad.yaml"),
    ("duplicate-name", b"name: a\nname: b\n", "duplicate key 'name'"),
    ("duplicate-base", b"name: a\nbase: {}\nbase: {train: {epochs: 2}}\n", "duplicate key 'base'"),
    ("duplicate-epochs", b"name: a\nbase:\n  train:\n    epochs: 0\n    epochs: 2\n", "duplicate key 'epochs'"),
    ("python-tag", b"name: !!python/object/apply:os.system ['echo pwned']\n", "python"),
    ("python-name-tag", b"name: !!python/name:os.system\n", "python"),
    ("unclosed-bracket", b"name: [unclosed\n", "not valid YAML"),
    ("tab-indent", b"base:\n\ttrain: 1\n", "not valid YAML"),
    ("bad-indent", b"base:\n  train:\n epochs: 1\n", "not valid YAML"),
    ("two-documents", b"name: a\n---\nname: b\n", "bad.yaml"),
    ("huge-file", b"name: a\n" + b"# " + b"x" * 1_100_000 + b"\n", "more than"),
    ("unknown-top-key", b"name: a\nserch: {}\n", "serch"),
    ("unknown-nested-key", b"name: a\nbase: {train: {epoks: 2}}\n", "base.train.epoks"),
    ("section-is-scalar", b"name: a\nbase: {train: 5}\n", "base.train"),
]


@pytest.mark.parametrize("content,culprit", [(c, k) for _, c, k in RAW_SPECS], ids=[i for i, _, _ in RAW_SPECS])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_spec_file(ws, capsys, command, content, culprit):
    path = _write_spec(ws, content)
    check_refused(ws, capsys, [command, str(path)], culprit)


def test_missing_and_directory_spec(ws, capsys):
    check_refused(ws, capsys, ["validate", str(ws / "nope.yaml")], "nope.yaml")
    check_refused(ws, capsys, ["run", str(ws / "nope.yaml")], "nope.yaml")
    (ws / "adir").mkdir()
    check_refused(ws, capsys, ["validate", str(ws / "adir")], "adir")


# ----------------------------------------------------------------------------- field values
# Each is tried in the spec file (validate and run) and as a --set value.

FIELDS = [  # (field path under the spec root, bad value, culprit)
    ("base.train.lr", INF, "train.lr"), ("base.train.lr", NAN, "train.lr"), ("base.train.lr", -1, "train.lr"),
    ("base.train.lr", 0, "train.lr"), ("base.train.lr", "fast", "train.lr"), ("base.train.lr", [0.1], "train.lr"),
    ("base.train.text_lr", INF, "train.text_lr"),
    # finite but unusable: beyond float32 (torch's SGD overflowed), or past the absurd-value bounds
    ("base.train.lr", 1e300, "train.lr"), ("base.train.lr", 101, "train.lr"), ("base.train.text_lr", 1e300, "train.text_lr"),
    ("base.train.weight_decay", 1e300, "train.weight_decay"), ("base.train.weight_decay", 11, "train.weight_decay"),
    ("base.lico.alpha", 1e300, "lico.alpha"), ("base.lico.beta", 1e39, "lico.beta"),
    ("base.lico.ot.epsilon", 1e-300, "lico.ot.epsilon"), ("base.lico.mm.temperature", 1e300, "lico.mm.temperature"),
    ("base.lico.ot.epsilon", INF, "lico.ot.epsilon"), ("base.lico.ot.epsilon", NAN, "lico.ot.epsilon"),
    ("base.lico.ot.epsilon", 0, "lico.ot.epsilon"), ("base.lico.ot.epsilon", -0.1, "lico.ot.epsilon"),
    ("base.lico.ot.tol", INF, "lico.ot.tol"), ("base.lico.ot.max_iter", 0, "lico.ot.max_iter"),
    ("base.lico.ot.points", "pixels", "lico.ot.points"),
    ("base.lico.alpha", INF, "lico.alpha"), ("base.lico.alpha", NAN, "lico.alpha"), ("base.lico.alpha", -1, "lico.alpha"),
    ("base.lico.beta", -1, "lico.beta"), ("base.lico.beta", INF, "lico.beta"),
    ("base.lico.mm.temperature", 0, "lico.mm"), ("base.lico.mm.temperature", INF, "lico.mm.temperature"),
    ("base.lico.mm.temperature_min", 5.0, "lico.mm"), ("base.lico.mm.sign", "neutral", "lico.mm.sign"),
    ("resources.cpu", INF, "resources.cpu"), ("resources.cpu", NAN, "resources.cpu"), ("resources.cpu", 0, "resources.cpu"),
    ("resources.cpu", -1, "resources.cpu"), ("resources.gpu", -1, "resources.gpu"), ("resources.gpu", INF, "resources.gpu"),
    ("base.train.epochs", 0, "train.epochs"), ("base.train.epochs", -1, "train.epochs"),
    ("base.train.epochs", 1.5, "train.epochs"), ("base.train.epochs", "two", "train.epochs"),
    ("base.train.epochs", INF, "train.epochs"), ("base.train.batch_size", 0, "train.batch_size"),
    ("base.train.momentum", 1.0, "train.momentum"), ("base.train.momentum", -0.1, "train.momentum"),
    ("base.train.ema", 1.0, "train.ema"), ("base.train.ema", 0, "train.ema"),
    ("base.train.weight_decay", -1, "train.weight_decay"), ("base.train.warmup_epochs", INF, "train.warmup_epochs"),
    ("base.train.device", "tpu", "train.device"), ("base.train.device", "cuda:x", "train.device"),
    ("base.train.device", "", "train.device"), ("base.train.optimizer", "adam", "train.optimizer"),
    ("base.train.precision", "fp8", "train.precision"), ("base.train.schedule", "step", "train.schedule"),
    ("base.data.name", "mnist", "data.name"), ("base.data.train_subset", 0, "data.train_subset"),
    ("base.data.image_size", 4, "data.image_size"), ("base.data.placed.clutter_contrast", [0.9, 0.1], "clutter_contrast"),
    ("base.data.shortcut.fraction", 1.5, "shortcut.fraction"),
    ("base.model.backbone", "resnet999", "model.backbone"), ("base.model.dropout", 1.0, "model.dropout"),
    ("base.text.encoder", "bert", "text.encoder"), ("base.text.n_ctx", 0, "text.n_ctx"),
    ("base.text.n_ctx", 100, "text.n_ctx"), ("base.text.proj_dropout", NAN, "text.proj_dropout"),
    ("base.eval.cams", ["nope"], "eval.cams"), ("base.eval.n_images", -1, "eval.n_images"),
    ("base.eval.road_percentiles", [0], "road_percentiles"), ("base.eval.road_percentiles", [], "road_percentiles"),
    ("base.eval.blur_sigma", INF, "eval.blur_sigma"), ("base.eval.road_noise", NAN, "eval.road_noise"),
    ("name", "..", "name"), ("name", ".", "name"), ("name", "a/b", "name"), ("name", "", "name"),
    ("name", "a b", "name"), ("name", "../escape", "name"),
    ("storage", "/proc/lico", "/proc/lico"), ("storage", "/dev/null/results", "/dev/null"),
    ("search.optuna_storage", "garbage:://x", "optuna_storage"), ("search.optuna_storage", "not a url", "optuna_storage"),
    ("search.algorithm", "bayes", "search.algorithm"), ("search.num_samples", 0, "search.num_samples"),
    ("search.metrics", {}, "search.metrics"), ("search.metrics", {"test/acc": "up"}, "search.metrics"),
    ("search.scheduler.name", "hyperband", "search.scheduler"), ("search.max_failures", -2, "search.max_failures"),
    ("search.scheduler.reduction_factor", 1, "reduction_factor"),
    ("tracking.wandb", {"mode": "offline"}, "tracking.wandb"),
]


def _fid(case) -> str:
    path, value, _ = case
    return f"{path}={value!r}"


@pytest.mark.parametrize("path,value,culprit", FIELDS, ids=[_fid(c) for c in FIELDS])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_field_in_spec(ws, capsys, command, path, value, culprit):
    spec = _write_spec(ws, _spec_with(path, value))
    check_refused(ws, capsys, [command, str(spec)], culprit)


@pytest.mark.parametrize("path,value,culprit", FIELDS, ids=[_fid(c) for c in FIELDS])
def test_bad_field_by_set(ws, capsys, path, value, culprit):
    shown = json.dumps(value).replace("Infinity", ".inf").replace("NaN", ".nan")
    check_refused(ws, capsys, ["validate", str(ws / "ok.yaml"), "--set", f"{path}={shown}"], culprit)


# ----------------------------------------------------------------------------- search spaces and arms

SPACES = [  # (search section overrides, culprit)
    ({"algorithm": "random", "space": {"train.lr": {"uniform": [3, 1]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.lr": {"uniform": [1, 1]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.lr": {"loguniform": [0, 1]}}}, "loguniform"),
    ({"algorithm": "random", "space": {"train.lr": {"loguniform": [-1, 1]}}}, "loguniform"),
    ({"algorithm": "random", "space": {"train.lr": {"uniform": [0, INF]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.lr": {"uniform": [NAN, 1]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.lr": {"uniform": [-INF, 1]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.lr": {"uniform": ["a", "b"]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.lr": {"uniform": [0.1]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.momentum": {"uniform": [0.5, 1.5]}}}, "train.momentum"),
    ({"algorithm": "random", "space": {"train.epochs": {"uniform": [1, 3]}}}, "train.epochs"),
    ({"algorithm": "random", "space": {"train.batch_size": {"loguniform": [16, 64]}}}, "train.batch_size"),
    ({"algorithm": "random", "space": {"text.n_ctx": {"quniform": [1, 8, 1]}}}, "text.n_ctx"),
    ({"algorithm": "random", "space": {"train.epochs": {"randint": [1.5, 3]}}}, "train.epochs"),
    ({"algorithm": "random", "space": {"train.epochs": {"randint": [0, 3]}}}, "train.epochs"),
    ({"algorithm": "random", "space": {"train.lr": {"quniform": [0, 1, 0]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.lr": {"quniform": [0.1, 1]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.lr": {"uniform": [0.1, 1], "grid": [1]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.lr": {"normal": [0, 1]}}}, "train.lr"),
    ({"algorithm": "random", "space": {"train.epoks": {"grid": [1]}}}, "train.epoks"),
    ({"space": {"train.lr": {"grid": []}}}, "train.lr"), ({"space": {"train.lr": {"choice": []}}}, "train.lr"),
    ({"space": {"train.lr": {"uniform": [0.01, 0.1]}}}, "train.lr"),          # grid algorithm, continuous draw
    ({"space": {"train.epochs": {"grid": [1, 0]}}}, "train.epochs"),
    ({"space": {"train.lr": {"grid": [0.1, INF]}}}, "train.lr"),
    ({"space": {"train.lr": {"grid": [0.1, NAN]}}}, "train.lr"),
    ({"space": {"data.name": {"grid": ["digits", "mnist"]}}}, "data.name"),
    ({"space": {"eval.cams": {"grid": [["gradcam"], ["nope"]]}}}, "eval.cams"),
    ({"algorithm": "optuna", "space": {"train.seed": {"grid": [0, 1]}}}, "optuna"),
    ({"algorithm": "optuna", "space": {"eval.cams": {"choice": [["gradcam"], ["rise"]]}}}, "eval.cams"),
    ({"scheduler": {"name": "asha"}, "metrics": {"test/acc": "max", "test/acc_ema": "max"}}, "asha"),
    ({"space": {"train.seed": {"grid": [0, 1]}}, "bad": 1}, "search.bad"),
]

ARMS = [  # (ablation section, culprit)
    ({"..": {}}, ".."), ({"a/b": {}}, "a/b"), ({".": {}}, "'.'"), ({"ce": {"lico.zz_nope": 1}}, "lico.zz_nope"),
    ({"ce": {"lico.alpha": -1}}, "lico.alpha"), ({"ce": {"train.lr": INF}}, "train.lr"),
    ({"ce": {"train.epochs": 0}}, "train.epochs"), ({"ce": 5}, "ablation.ce"), ({"ce": {"data.name": "mnist"}}, "data.name"),
]


@pytest.mark.parametrize("search,culprit", SPACES, ids=[str(i) for i in range(len(SPACES))])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_search_space(ws, capsys, command, search, culprit):
    spec = copy.deepcopy(VALID)
    spec["search"] = {**spec["search"], **search}
    check_refused(ws, capsys, [command, str(_write_spec(ws, spec))], culprit)


@pytest.mark.parametrize("ablation,culprit", ARMS, ids=[str(i) for i in range(len(ARMS))])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_arm(ws, capsys, command, ablation, culprit):
    spec = copy.deepcopy(VALID)
    spec["ablation"] = ablation
    check_refused(ws, capsys, [command, str(_write_spec(ws, spec))], culprit)


def test_smoke_test_checks_before_shrinking(ws, capsys):
    """The shrink keeps only the first grid value: the bad second one must be refused first."""
    spec = copy.deepcopy(VALID)
    spec["search"] = {"space": {"train.epochs": {"grid": [1, 0]}}}
    check_refused(ws, capsys, ["run", str(_write_spec(ws, spec)), "--smoke-test"], "train.epochs")


# ----------------------------------------------------------------------------- --set values

SETS = [  # (--set text, culprit)
    ("train.epochs=[1,", "train.epochs"), ("train.epochs=!!python/object/apply:os.system ['echo pwned']", "python"),
    ("train.epochs=!!python/name:os.system", "python"), ("train.epochs", "PATH=VALUE"), ("=5", "=5"),
    ("lico.zz_nope=1", "lico.zz_nope"), ("train.epochs.x=1", "train.epochs"), ("eval.cams.0=rise", "eval.cams"),
    ("train..epochs=1", "train..epochs"), ("base.train.epoks=1", "epoks"), ("lico.ot.epsilom=0.1", "epsilom"),
    ("train=5", "train"), ("train={epochs: 1, epochs: 2}", "duplicate key 'epochs'"),
    ("train.epochs=" + "[" * 300 + "]" * 300, "nested"), ("name=\udcff", "name"),
    ("train.epochs=*undefined", "train.epochs"), ("train.epochs=&a [*a]", "train.epochs"),
    ("search.space={train.lr: {uniform: [1, 0]}}", "train.lr"),
    ("ablation={..: {}}", ".."), ("resources={cpu: .inf}", "resources.cpu"), ("storage=/proc/lico", "/proc/lico"),
]


@pytest.mark.parametrize("text,culprit", SETS, ids=[str(i) for i in range(len(SETS))])
def test_bad_set_value(ws, capsys, text, culprit):
    check_refused(ws, capsys, ["validate", str(ws / "ok.yaml"), "--set", text], culprit)


# ----------------------------------------------------------------------------- CLI arguments

CLI = [  # (argv with {ok} = the valid spec and {ws} = the workspace, culprit)
    (["run", "{ok}", "--name", ".."], "--name"), (["run", "{ok}", "--name", "."], "--name"),
    (["run", "{ok}", "--name", "a/b"], "--name"), (["run", "{ok}", "--name", ""], "--name"),
    (["run", "{ok}", "--name", "../../etc"], "--name"), (["run", "{ok}", "--storage", "/proc/lico"], "/proc/lico"),
    (["run", "{ok}", "--storage", "{ok}/sub"], "is a file"),
    (["run", "{ok}", "--set", "resources.gpu=1"], "resources.gpu"),
    (["run", "{ok}", "--set", "resources.cpu=4096"], "resources.cpu"),
    (["run", "{ok}", "--set", "train.device=cuda"], "train.device"),
    (["run", "{ok}", "--set", "text.model={ws}/no-such-encoder"], "no-such-encoder"),
    (["run", "{ok}", "--set", "data.name=cifar10", "--set", "data.root={ws}/no-cifar"], "cifar10"),
    (["run", "{ok}", "--set", "data.name=imagefolder"], "imagefolder"),
    (["run", "{ok}", "--set", "text.encoder=open_clip", "--set", "text.model=ViT-B-32",
      "--set", "text.pretrained={ws}/no-clip.pt"], "no-clip.pt"),
    (["report", "{ws}/no-root"], "no-root"), (["report", "{ok}"], "ok.yaml"), (["report", "{ws}/empty-root"], "empty-root"),
    (["report", "{ws}/results", "--level", "2"], "--level"), (["report", "{ws}/results", "--level", "0"], "--level"),
    (["report", "{ws}/results", "--target-width", "-1"], "--target-width"),
    (["report", "{ws}/results", "--format", "xml"], "--format"), (["report", "{ws}/results", "--level", "abc"], "--level"),
    (["index", "{ws}/no-root"], "no-root"), (["index", "{ws}/empty-root"], "empty-root"),
    (["explain", "{ws}/no-ckpt.pt"], "no-ckpt.pt"), (["explain", "{ok}", "-n", "many"], "-n"),
    (["explain", "{ok}", "--method", "magic"], "--method"), (["rerun", "{ws}/no-trial"], "no-trial"),
    (["rerun", "{ws}/empty-root"], "empty-root"), (["resume", "{ws}/no-exp"], "no-exp"),
    (["resume", "{ws}/empty-root"], "empty-root"), (["validate"], "usage"), (["frobnicate"], "frobnicate"),
    (["train", "{ws}/nope.yaml"], "nope.yaml"), (["train", "{ok}", "--set", "train.lr=.inf"], "train.lr"),
    (["train", "{ok}", "--set", "train.lr=1e300"], "train.lr"), (["train", "{ok}", "--set", "lico.alpha=1.0e+300"], "lico.alpha"),
    (["dashboard", "--port", "http"], "--port"),
]


@pytest.mark.parametrize("argv,culprit", CLI, ids=[" ".join(a).replace("/", "_") for a, _ in CLI])
def test_bad_cli_arguments(ws, capsys, argv, culprit):
    (ws / "empty-root").mkdir()
    argv = [a.format(ok=ws / "ok.yaml", ws=ws) for a in argv]
    check_refused(ws, capsys, argv, culprit.format(ws=ws))


@pytest.mark.parametrize("setting", ["train.lr=100", "train.text_lr=10", "train.weight_decay=0.3",
                                     "lico.alpha=1000", "lico.ot.epsilon=1e-4", "lico.ot.tol=1e-12"])
def test_large_or_small_but_usable_values_pass(ws, capsys, setting):
    """The bounds refuse typos, not real settings: these validate."""
    assert main(["validate", str(ws / "ok.yaml"), "--set", setting]) == 0, capsys.readouterr().err
