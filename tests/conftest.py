import atexit
import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from ray_helpers import ray_tmp  # noqa: F401  (the fixture every Ray test asks for by name)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The key that signs experiments (lico_tune/trust/): one per test session, never the user's own
# (~/.config/lico-tune/manifest.key); every lico-tune process a test starts inherits it, and so do
# the pytest-xdist workers (they start after this runs in the controller, and keep its key).
if "PYTEST_XDIST_WORKER" not in os.environ:
    _KEY_DIR = tempfile.mkdtemp(prefix="lico-tune-test-key-")
    os.environ["LICO_TUNE_KEY_FILE"] = os.path.join(_KEY_DIR, "manifest.key")
    atexit.register(shutil.rmtree, _KEY_DIR, True)


# ----------------------------------------------------------------------------- the e2e marker
# `e2e` marks every test that starts processes: Ray (a local or loopback cluster, the CLI in a
# subprocess that starts Ray), a Streamlit app (a server, or AppTest's script runs), Chromium.
# `pytest -m "not e2e"` is the quick loop; `make test` runs everything. A test is e2e when it asks
# for a fixture that starts them, or its module or its name is listed below; a test left unmarked
# that starts one of them anyway fails (the guard after E2E_TESTS), so the lists cannot go stale
# silently.
E2E_FIXTURES = {"ray_tmp",                                            # Ray: its private RAY_TMPDIR
                "results_root", "damaged_root", "finished",           # results_fixtures: sweeps under Ray
                "ended", "stopped"}                                   # module fixtures running the CLI under Ray
E2E_MODULES = {"cli/test_make_demo.py",
               "dashboard/test_dashboard.py",
               "plan/test_preflight_offline.py", "plan/test_targets.py",
               "project/test_packaging.py", "project/test_published_studies.py", "project/test_study_figures.py",
               "storage/test_safe_files.py",
               "trust/test_no_lost_results.py", "trust/test_trusted_state.py", "trust/test_verified_bytes.py",
               "tune/test_autoscaling.py", "tune/test_cluster.py", "tune/test_crash_resume_s3.py",
               "tune/test_recover.py", "tune/test_resume.py", "tune/test_trackers.py", "tune/test_true_status.py"}
E2E_TESTS = {"cli/test_integrity_and_interrupts.py::test_dashboard_exits_on_sigterm_and_stops_streamlit",
             "train/test_chance.py::test_old_experiment_without_the_flag_opens_in_report_and_dashboard",
             "cli/test_environment_errors.py::test_the_dashboards_root_box_refuses_an_unusable_root_in_seconds",
             "cli/test_environment_errors.py::test_paths_inside_an_unreadable_directory",     # the CLI under setpriv
             "cli/test_cli_help.py::test_version_is_the_package_version",                      # the CLI
             "project/test_benchmarks.py::test_all_smoke_test_runs_without_the_project_dependencies"}  # a clean Python
TESTS = Path(__file__).resolve().parent     # E2E_MODULES and E2E_TESTS name files relative to it
_E2E_PROGRAMS = {"ray", "raylet", "gcs_server", "streamlit", "make", "lico-tune"}
_E2E_MODULES = ("lico_tune.cli", "streamlit", "ray")


def starts_e2e_process(argv: list[str]) -> bool:
    """argv runs Ray, Streamlit, Chromium, make or lico-tune's CLI (also behind setpriv, timeout...)."""
    for i, arg in enumerate(argv):
        name = os.path.basename(arg)
        if name in _E2E_PROGRAMS or name.startswith("chrom") or "/site-packages/ray/" in arg:
            return True
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1].startswith(_E2E_MODULES):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    stale = sorted(m for m in E2E_MODULES | {t.split("::")[0] for t in E2E_TESTS} if not (TESTS / m).is_file())
    if stale:       # a moved or renamed test file: its tests would lose the mark
        raise pytest.UsageError(f"tests/conftest.py's E2E_MODULES or E2E_TESTS name missing files: {stale}")
    for item in items:
        module = item.path.resolve().relative_to(TESTS).as_posix()          # e.g. "tune/test_resume.py"
        name = f"{module}::{getattr(item, 'originalname', item.name)}"
        if set(item.fixturenames) & E2E_FIXTURES or module in E2E_MODULES or name in E2E_TESTS:
            item.add_marker(pytest.mark.e2e)


_started: list[list[str]] = []


def _audit(event: str, args: tuple) -> None:
    """Python's audit hook: note each program a test starts (subprocess, os.exec*/spawn)."""
    if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn"):
        argv = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else [args[0]]
        _started.append([os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in argv])


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _e2e_guard(request):
    """A test without the e2e mark must not start Ray, Streamlit, Chromium or the CLI."""
    del _started[:]
    yield
    if request.node.get_closest_marker("e2e") is None:
        bad = [" ".join(argv)[:300] for argv in _started if starts_e2e_process(argv)]
        assert not bad, (f"{request.node.nodeid} starts {bad[0]!r} but is not marked e2e: add it to "
                         f"tests/conftest.py's E2E_TESTS (or give it a fixture of E2E_FIXTURES)")


# A trial on sklearn digits with the tiny CNN and MiniLM: seconds on a CPU.
TINY_TRIAL = {
    "data": {"name": "digits", "val_fraction": 0.2},   # a validation split: searches select on val/acc
    "model": {"backbone": "tiny_cnn"},
    "text": {"encoder": "hf", "model": "minilm", "n_ctx": 4, "features": "eot"},
    "lico": {"alpha": 1.0, "beta": 1.0},
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "steps_per_epoch": 4, "seed": 0,
              "ema": 0.9, "log_every": 2},
    "eval": {"batch_size": 512, "n_images": 16, "gallery_images": 2},
}


# Words a fix starts with: a refusal says how to put it right ("set data.root ...", "run ... resume").
FIX = re.compile(r"\b(use|pass|set|write|fix|remove|delete|keep|run|rename|re-save|flatten|restore|start|"
                 r"choose|install|check|make|copy|train|join|give|leave|lists every field|usage)\b", re.I)


def assert_refused(result, *culprits: str, fix: bool = True, alone: bool = True) -> str:
    """The one "refused cleanly" check: exit 2, no traceback, one paragraph naming each culprit
    (and, with `fix`, how to fix it). Returns the paragraph.

    result: a finished process (subprocess.CompletedProcess: stdout, stderr) or (exit code, output).
    alone: the output is lico-tune's alone (an in-process call's captured streams), so all of it
    must be the one paragraph; else (a process that started Ray, whose log lines come first) the
    paragraph is its one line starting with 'error: '."""
    if isinstance(result, subprocess.CompletedProcess):
        rc, out = result.returncode, (result.stdout or "") + (result.stderr or "")
    else:
        rc, out = result
    assert rc == 2, f"exit {rc}:\n{out[-4000:]}"
    assert "Traceback" not in out, out[-4000:]
    if alone:
        msg = out.strip()
        assert msg and "\n\n" not in msg, f"not one paragraph:\n{msg}"
    else:
        errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1, out[-4000:]
        msg = errors[0]
    for culprit in culprits:
        assert culprit in msg, f"{culprit!r} not named in:\n{msg}"
    assert not fix or FIX.search(msg), f"no fix in:\n{msg}"
    return msg


def checksums(root: Path) -> dict[str, str]:
    """Every file under root -> its SHA-256, and every directory -> 'dir' (so a new empty one shows)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


class MarkerPayload:
    """Unpickling runs `touch marker` (as a hostile tuner.pkl or state file would run anything)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def tiny_trial_tree():
    return copy.deepcopy(TINY_TRIAL)


# ----------------------------------------------------------------------------- tiny models

@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster than two, and immune to a busy 2-core machine
    (contention made each small op ~100x slower). Use: pytestmark = pytest.mark.usefixtures("one_thread")."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TinyCNN(nn.Module):
    """A small random CNN with the ImageClassifier interface (cam_layer: a feature map > 1x1), for
    `from conftest import TinyCNN`. Plain: two 3x3 convs of `width` channels. Otherwise: batch norm
    after the first and a stride-2 second conv to 2 * width channels."""

    def __init__(self, c_in: int = 3, k: int = 5, width: int = 8, plain: bool = False):
        super().__init__()
        out = width if plain else 2 * width
        norm = [] if plain else [nn.BatchNorm2d(width)]
        self.body = nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1), *norm, nn.ReLU(),
                                  nn.Conv2d(width, out, 3, 1 if plain else 2, 1), nn.ReLU())
        self.fc = nn.Linear(out, k)

    @property
    def cam_layer(self) -> nn.Module:
        return self.body[-1]

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


# ----------------------------------------------------------------------------- leaked servers
# A test marked `starts_server` (a Streamlit server, a browser) runs with a unique tag in its
# environment, which every process it starts inherits, however it is detached (own session,
# re-parented to init). Afterwards no tagged process may be left: they get a grace period to
# exit, then the survivors are killed and the test fails naming them.

def _tagged_processes(tag: str) -> dict[int, str]:
    needle = f"LICO_TEST_PROCESS_TAG={tag}".encode()
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                found[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
            with open(f"/proc/{d}/stat", "rb") as f:        # a zombie has ended (state Z)
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    found.pop(int(d))
        except OSError:       # ended meanwhile, or not ours to read
            continue
    return found


def pytest_configure(config):
    config.addinivalue_line("markers", "starts_server: the test starts servers or browsers; none may outlive it")


@pytest.fixture(autouse=True)
def _no_leaked_servers(request, monkeypatch):
    if request.node.get_closest_marker("starts_server") is None:
        yield
        return
    import signal
    import time
    import uuid
    tag = uuid.uuid4().hex
    monkeypatch.setenv("LICO_TEST_PROCESS_TAG", tag)
    yield
    deadline = time.time() + 10
    left = _tagged_processes(tag)
    while left and time.time() < deadline:
        time.sleep(0.2)
        left = _tagged_processes(tag)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes left running by {request.node.name}: {left}"
