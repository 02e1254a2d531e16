"""Issue 31 item 1: Ray reads the bytes lico-tune verified, never the directory again.

`resume` checks the signed files, then starts Ray, then Ray reads tuner.pkl and the searcher's state.
Here the files are swapped for pickle payloads (tests/conftest.py MarkerPayload) the moment Ray's
session folder appears, i.e. after the check and before Ray reads them (as anyone who can write
the directory can do by polling): no payload runs, the resume finishes from the verified bytes, the
swapped files are left unsigned, and the next `resume` refuses them.
"""
from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path

from lico_tune.layout import MANIFEST_FILE, TUNER_FILE
from conftest import MarkerPayload
from ray_helpers import lico_tune
from conftest import assert_refused
from test_no_lost_results import _copy

pytest_plugins = ["results_fixtures"]


def _swap_when_ray_starts(ray_tmp: str, files: list[Path], payload: bytes, done: threading.Event) -> None:
    """Poll for Ray's session folder under ray_tmp, then replace each file with the payload."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(p.name.startswith("session_") for p in Path(ray_tmp).glob("**/session_*")):
            for f in files:
                f.write_bytes(payload)
            done.set()
            return
        time.sleep(0.005)


def test_files_swapped_after_the_check_are_never_unpickled(finished, ray_tmp, tmp_path):
    exp = _copy(finished, tmp_path)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(MarkerPayload(marker))
    swapped = [exp / TUNER_FILE, *sorted(exp.glob("basic-variant-state-*.json")),
               *sorted(exp.glob("experiment_state-*.json"))]
    assert len(swapped) >= 3
    done = threading.Event()
    poller = threading.Thread(target=_swap_when_ray_starts, args=(ray_tmp, swapped, payload, done), daemon=True)
    poller.start()
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=240)
    poller.join(5)
    assert done.is_set(), "Ray's session folder never appeared: the swap did not happen"
    assert not marker.exists(), "a payload swapped in after the check ran"
    assert out.returncode == 0, out.stdout[-4000:]
    assert "resuming" in out.stdout and "Traceback" not in out.stdout
    # Ray's own upload may put the verified bytes back; a payload left in place is not signed by the
    # driver (it signs only digests it verified or wrote), so the next resume refuses it
    left = [f.name for f in swapped if f.read_bytes() == payload]
    out = lico_tune(["resume", str(exp)], ray_tmp, timeout=240)
    if left:
        assert_refused(out, "lico-tune trust", left[0], fix=False, alone=False)
    else:
        assert out.returncode == 0, out.stdout[-4000:]
    assert not marker.exists()
    assert (exp / MANIFEST_FILE).exists()
