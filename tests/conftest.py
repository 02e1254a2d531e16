import atexit
import copy
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from ray_helpers import ray_tmp  # noqa: F401  (the fixture every Ray test asks for by name)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The key that signs experiments (lico_tune/trust.py): one per test session, never the user's own
# (~/.config/lico-tune/manifest.key); every lico-tune process a test starts inherits it, and so do
# the pytest-xdist workers (they start after this runs in the controller, and keep its key).
if "PYTEST_XDIST_WORKER" not in os.environ:
    _KEY_DIR = tempfile.mkdtemp(prefix="lico-tune-test-key-")
    os.environ["LICO_TUNE_KEY_FILE"] = os.path.join(_KEY_DIR, "manifest.key")
    atexit.register(shutil.rmtree, _KEY_DIR, True)


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
