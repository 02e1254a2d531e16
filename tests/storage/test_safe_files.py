"""Issue 31, items 2, 3, 5 (HOME, key file, signals) and 6: the one file layer (lico_tune/storage/safe_files.py).

Every file lico-tune reads or writes in an experiment, a results root, the catalog and the key is a
regular file (a FIFO or /dev/zero is refused before a byte is read), never reached through a
symlink out of the experiment, read under a size cap, and written by an atomic replace; each
failure is one paragraph naming the file (exit 2), and a reader of a whole root (report, index)
leaves the trial or experiment out with that warning. Each command runs in a subprocess under a
1 GiB address-space cap (RLIMIT_AS) and a timeout: a hang or a flood fails the test, not the
machine. Trees are compared before and after (lstat-based: a FIFO is never opened) and every
symlink's target outside is byte-identical afterwards. The layer's own tests, without an
experiment: test_safe_layer.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lico_tune.cli import main
from lico_tune.layout import CATALOG_FILE, DRIVER_FILE, LOCK_FILE, MANIFEST_FILE, RUN_FILE, SUMMARY_FILE
from lico_tune.results.scan import scan_root
from ray_helpers import REPO, kill_started, lico_tune_cleanly, private_tmpdir, ray_env
from conftest import assert_refused
from os_helpers import NO_DAC, Tmpfs, fill, in_time, temporary_files

pytest_plugins = ["results_fixtures"]

MEMORY_CAP = 1 << 30          # bytes of address space each command may map
COMMAND_TIMEOUT_S = 120       # a hang on a FIFO is forever; a loaded 2-core machine needs ~10 s per report


def tree(root: Path) -> dict[str, str]:
    """Every entry under root -> its SHA-256 (regular files), 'link -> target', or its kind: never
    opening a FIFO or a device (conftest.checksums would hang on one)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            out[str(p.relative_to(root))] = f"link -> {os.readlink(p)}"
        elif stat.S_ISREG(st.st_mode):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p.relative_to(root))] = stat.filemode(st.st_mode)[0]
    return out


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def cli(args: list[str], prefix: tuple[str, ...] = (), **env) -> subprocess.CompletedProcess:
    """`lico-tune ARGS` in a subprocess under the memory cap, with a private RAY_TMPDIR whose
    processes (none are expected: every case is refused before Ray starts) are stopped afterwards.
    env: variables to set (None: to unset); prefix: a command to run it under (setpriv)."""
    tmpdir = private_tmpdir()
    environ = ray_env(tmpdir, **{k: v for k, v in env.items() if v is not None})
    for k in [k for k, v in env.items() if v is None]:
        environ.pop(k, None)
    try:
        return subprocess.run([*prefix, sys.executable, "-m", "lico_tune.cli", *args], cwd=REPO, env=environ, text=True,
                              capture_output=True, timeout=COMMAND_TIMEOUT_S, preexec_fn=_cap_memory,
                              stdin=subprocess.DEVNULL)
    finally:
        left = kill_started([tmpdir])
        shutil.rmtree(tmpdir, ignore_errors=True)
        assert not left, f"processes left running by lico-tune {' '.join(args)}: {left}"


def make_special(path: Path, kind: str) -> None:
    """Replace path by a FIFO ('fifo') or a symlink to /dev/zero ('zero')."""
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        path.symlink_to("/dev/zero")


@pytest.fixture
def exp(finished, tmp_path) -> Path:
    """A private copy of the finished experiment (signed with the session's key): <tmp>/res/done."""
    shutil.copytree(finished["root"], tmp_path / "res", symlinks=True,
                    ignore=shutil.ignore_patterns(CATALOG_FILE + "*"))
    return tmp_path / "res" / "done"


def trials(exp: Path) -> list[Path]:
    found = sorted(exp.glob("trial_*"))
    assert len(found) == 2, found
    return found


# ----------------------------------------------------------------------------- FIFOs and /dev/zero, by command


@pytest.mark.parametrize("name", ["result.json", "error.txt", "trial_spec.yaml", "params.json"])
def test_a_whole_root_reader_leaves_out_the_trial_with_a_bad_file(exp, name):
    """One trial's file a FIFO, the other's a link to /dev/zero: report and index end, name both and
    leave the trials out of the statistics; nothing in the experiment changes."""
    a, b = trials(exp)
    make_special(a / name, "fifo")
    make_special(b / name, "zero")
    before = tree(exp)
    for args in (["report", str(exp.parent), "--no-catalog", "--format", "json"], ["index", str(exp.parent)]):
        out = cli(args)
        text = out.stdout + out.stderr
        assert "Traceback" not in text, text[-3000:]
        assert str(a / name) in out.stderr and "named pipe (FIFO)" in out.stderr, out.stderr[-3000:]
        assert str(b / name) in out.stderr and "/dev/zero" in out.stderr, out.stderr[-3000:]
        if args[0] == "report":
            assert out.returncode in (0, 2), text[-3000:]        # 2: no usable trial left, said in one line
        else:
            assert out.returncode == 0 and "2 trial(s)" in out.stdout, text[-3000:]
    assert tree(exp) == before
    _, records = scan_root(str(exp.parent))
    assert [t["usable"] for t in records] == [False, False], [t["warnings"] for t in records]
    assert all(any(name in w for w in t["warnings"]) for t in records), [t["warnings"] for t in records]


@pytest.mark.parametrize("name", [RUN_FILE, DRIVER_FILE])
def test_a_whole_root_reader_leaves_out_the_experiment_with_a_bad_file(exp, name):
    twin = exp.parent / "done2"
    shutil.copytree(exp, twin, symlinks=True)
    make_special(exp / name, "fifo")
    make_special(twin / name, "zero")
    before = tree(exp.parent)
    out = cli(["index", str(exp.parent)])
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert str(exp / name) in out.stderr and str(twin / name) in out.stderr, out.stderr[-3000:]
    out = cli(["report", str(exp.parent), "--no-catalog"])
    assert_refused((out.returncode, out.stderr), str(exp / name))
    assert str(twin / name) in out.stderr
    assert {k: v for k, v in tree(exp.parent).items() if not k.startswith(CATALOG_FILE)} == before


@pytest.mark.parametrize("kind", ["fifo", "zero"])
@pytest.mark.parametrize("name", [MANIFEST_FILE, "tuner.pkl", "trial/error.pkl"])
def test_trust_and_resume_refuse_a_special_file(exp, name, kind):
    path = trials(exp)[0] / "error.pkl" if name == "trial/error.pkl" else exp / name
    make_special(path, kind)
    before = tree(exp.parent)
    for command in ("trust", "resume"):
        out = cli([command, str(exp)])
        assert_refused((out.returncode, out.stderr), str(path))
        assert ("named pipe" if kind == "fifo" else "/dev/zero") in out.stderr
    assert tree(exp.parent) == before


# ----------------------------------------------------------------------------- symlinks out of the experiment


def test_symlinked_lock_manifest_and_catalog_leave_their_targets_alone(exp, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("someone's notes\n")
    import sqlite3
    with sqlite3.connect(outside / "app.db") as conn:
        conn.execute("CREATE TABLE app (x INTEGER)")
    before = tree(outside)

    (exp / LOCK_FILE).symlink_to(outside / "notes.txt")
    out = cli(["resume", str(exp)])
    assert_refused((out.returncode, out.stderr), str(exp / LOCK_FILE))
    (exp / LOCK_FILE).unlink()

    manifest = exp / MANIFEST_FILE
    shutil.move(manifest, outside / "manifest.json")
    before = tree(outside)
    manifest.symlink_to(outside / "manifest.json")
    out = cli(["trust", str(exp)])
    assert_refused((out.returncode, out.stderr), str(manifest))
    manifest.unlink()
    shutil.copy(outside / "manifest.json", manifest)

    (exp.parent / CATALOG_FILE).symlink_to(outside / "app.db")
    for args in (["index", str(exp.parent)], ["report", str(exp.parent)]):
        out = cli(args)
        assert_refused((out.returncode, out.stderr), str(exp.parent / CATALOG_FILE))
    assert tree(outside) == before


def test_resume_replaces_a_symlinked_summary_and_leaves_its_target_alone(exp, tmp_path):
    """The one case that runs Ray: resume of a finished experiment writes summary.json at its end."""
    outside = tmp_path / "outside.json"
    outside.write_text("another application's file\n")
    (exp / SUMMARY_FILE).unlink()
    (exp / SUMMARY_FILE).symlink_to(outside)
    out = lico_tune_cleanly(["resume", str(exp)], timeout=400)
    assert out.returncode == 0, out.stdout[-4000:]
    assert outside.read_text() == "another application's file\n"
    assert not (exp / SUMMARY_FILE).is_symlink() and len(json.loads((exp / SUMMARY_FILE).read_text())) == 2


# ----------------------------------------------------------------------------- atomic writes: trust on a full disk


def test_trust_on_a_full_disk_leaves_the_previous_manifest(exp, tmp_path):
    with Tmpfs(tmp_path / "small", "16m") as fs:
        shutil.copytree(exp, fs.path / "done", symlinks=True,
                        ignore=shutil.ignore_patterns("checkpoint_*", "gallery", "*.log", "events.*"))
        d = fs.path / "done"
        assert cli(["trust", str(d)]).returncode == 0
        manifest = (d / MANIFEST_FILE).read_bytes()
        (d / "extra-state.json").write_text('{"new": "state to sign"}')     # the next manifest differs
        fill(fs.path)
        out = cli(["trust", str(d)])
        assert_refused((out.returncode, out.stderr), "disk is full")
        assert (d / MANIFEST_FILE).read_bytes() == manifest
        assert not temporary_files(d), "a temporary file was left"


# ----------------------------------------------------------------------------- the key and HOME


@pytest.mark.parametrize("odd", ["fifo", "/dev/zero", "not utf-8", "directory", "unreadable", "huge"])
def test_an_odd_key_file_is_one_paragraph_from_trust_and_run(exp, finished, tmp_path, odd):
    key = tmp_path / "key" / "manifest.key"
    key.parent.mkdir(mode=0o700)
    if odd == "fifo":
        os.mkfifo(key, 0o600)
    elif odd == "/dev/zero":
        key.symlink_to("/dev/zero")
    elif odd == "not utf-8":
        key.write_bytes(b"\xff\xfe" * 40)
    elif odd == "directory":
        key.mkdir(mode=0o700)
    elif odd == "huge":
        with open(key, "wb") as f:
            f.truncate(1 << 30)
    else:
        key.write_text("a" * 64)
    if odd not in ("directory", "/dev/zero"):
        key.chmod(0o600 if odd != "unreadable" else 0)
    before = tree(exp.parent)
    prefix = tuple(NO_DAC) if odd == "unreadable" else ()      # root ignores file modes: drop that power
    for args in (["trust", str(exp)], ["run", str(finished["spec"]), "--storage", str(tmp_path / "new")]):
        done = cli(args, prefix, LICO_TUNE_KEY_FILE=str(key))
        assert_refused((done.returncode, done.stderr), str(key))
        assert "signing key" in done.stderr
    assert tree(exp.parent) == before and not (tmp_path / "new").exists()


def test_a_read_only_home_is_one_paragraph_naming_the_key(exp, finished, tmp_path):
    with Tmpfs(tmp_path / "home", "1m") as fs:
        fs.remount_ro()
        key = fs.path / ".config" / "lico-tune" / "manifest.key"
        for args in (["trust", str(exp)], ["run", str(finished["spec"]), "--storage", str(tmp_path / "new")]):
            out = cli(args, HOME=str(fs.path), LICO_TUNE_KEY_FILE=None)
            assert_refused((out.returncode, out.stderr), str(key))
            assert "read-only" in out.stderr
    assert not (tmp_path / "new").exists()


# ----------------------------------------------------------------------------- no tracebacks


def test_deeply_nested_json_is_a_damaged_file_not_a_traceback(exp):
    a, _ = trials(exp)
    (a / "result.json").write_text("[" * 200_000 + "\n")
    (exp / DRIVER_FILE).write_text("{\"a\":" * 200_000)
    out = cli(["report", str(exp.parent), "--no-catalog"])
    assert "Traceback" not in out.stdout + out.stderr and out.returncode in (0, 2), out.stderr[-3000:]
    assert "result.json is truncated or corrupt" in out.stderr, out.stderr[-3000:]


def test_a_closed_pipe_ends_report_quietly(exp):
    proc = subprocess.Popen([sys.executable, "-m", "lico_tune.cli", "report", str(exp.parent), "--no-catalog"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                    # `| head -1` gone before the report is printed (deterministic)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=COMMAND_TIMEOUT_S) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_an_absurd_cloud_timeout_is_refused(tmp_path):
    out = cli(["report", "s3://lico-tune-no-such-bucket/x"], LICO_TUNE_CLOUD_TIMEOUT_S="1e9")
    assert_refused((out.returncode, out.stderr), "LICO_TUNE_CLOUD_TIMEOUT_S=1e9")


@pytest.mark.parametrize("command", ["trust", "index", "run", "train"])
def test_ctrl_c_names_the_command_that_was_interrupted(command, monkeypatch, capsys, tmp_path):
    import lico_tune.cli.parser as parser

    def interrupted(_args):
        raise KeyboardInterrupt
    for name in ("cmd_trust", "cmd_index", "cmd_run", "cmd_train"):
        monkeypatch.setattr(parser, name, interrupted)
    monkeypatch.setattr(parser, "check_signing_key", lambda _args: None)
    (tmp_path / "spec.yaml").write_text("name: x\n")
    arg = str(tmp_path) if command in ("trust", "index") else str(tmp_path / "spec.yaml")
    assert main([command, arg]) == 130
    err = capsys.readouterr().err
    assert err.startswith(f"error: lico-tune {command} interrupted:") and err.count("\n") == 1, err
    assert ("--resume" in err) == (command == "train"), err


# ----------------------------------------------------------------------------- the low cases


@pytest.mark.parametrize("argv, culprit", [
    (["--frob"], "--frob"),
    (["--frob", "report", "x"], "--frob"),
    (["schema", "-o", "/proc/version"], "/proc/version"),
    (["schema", "-o", "/dev/null"], "/dev/null"),
    (["report", "{root}", "--db", "{root}"], "is a directory"),
    (["report", "{root}", "--db", "garbage"], "garbage"),
    (["report", "{root}", "--db", "sqlite:///{root}"], "is a directory"),
    (["index", "{root}", "--db", "not a url"], "not a url"),
])
def test_the_low_cases(exp, capsys, argv, culprit):
    root = str(exp.parent)
    before = tree(exp.parent)
    argv = [a.replace("{root}", root) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:            # argparse's own errors (usage + one line)
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and culprit in err, err
    assert tree(exp.parent) == before


def test_an_arm_named_on_keeps_its_name(tmp_path, capsys):
    spec = tmp_path / "on.yaml"
    spec.write_text("name: onoff\nbase:\n  data: {name: digits, val_fraction: 0.2}\n  model: {backbone: tiny_cnn}\n"
                    "ablation:\n  on: {lico.alpha: 0}\n  off: {}\n")
    assert main(["validate", str(spec), "--print"]) == 0
    out = capsys.readouterr().out
    assert "'on':" in out and "'off':" in out and "[key]" not in out, out


def test_a_yaml_file_that_is_a_fifo_is_refused_not_read(tmp_path):
    from lico_tune.spec.safe_yaml import SpecError, read_file
    os.mkfifo(tmp_path / "trial_spec.yaml")
    with pytest.raises(SpecError, match="named pipe"):
        in_time(lambda: read_file(tmp_path / "trial_spec.yaml"))
