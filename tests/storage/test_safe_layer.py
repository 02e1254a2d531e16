"""The one file layer itself (lico_tune/storage/safe_files.py), without an experiment: reads refuse
special files, links out and oversized files; writes replace a symlink and never write its target;
a full disk leaves the previous file whole; a driver on another host is judged by the reader's clock.
The commands on a real experiment: test_safe_files.py."""
from __future__ import annotations

import json
import os
import socket
import time

import pytest

from lico_tune.layout import DRIVER_FILE, MANIFEST_FILE, SUMMARY_FILE
from lico_tune.results.liveness import FUTURE_TOLERANCE_S, STALE_S, driver_state, driver_verdict
from lico_tune.storage import Storage, write_text
from lico_tune.storage.safe_files import MAX_READ_BYTES, UnsafeFile, read_bytes, write_atomic
from os_helpers import Tmpfs, fill, in_time, temporary_files


def test_reads_refuse_special_files_links_out_and_oversized_files(tmp_path):
    root = tmp_path / "exp"
    root.mkdir()
    (tmp_path / "outside.json").write_text('{"secret": 1}')
    os.mkfifo(root / "fifo.json")
    (root / "zero.json").symlink_to("/dev/zero")
    (root / "out.json").symlink_to(tmp_path / "outside.json")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "sock.json"))
        with open(root / "big.json", "wb") as f:       # sparse: no disk used
            f.truncate(MAX_READ_BYTES + 1)
        for name, says in [("fifo.json", "named pipe (FIFO)"), ("zero.json", "character device"),
                           ("sock.json", "socket"), ("out.json", "outside"), ("big.json", "bytes")]:
            with pytest.raises(UnsafeFile) as got:
                in_time(lambda: read_bytes(str(root / name), within=str(root)))
            assert str(root / name) in str(got.value) and says in str(got.value), got.value
            assert Storage(str(root)).read_text(str(root / "ok.json")) is None      # missing: still None
    (root / "ok.json").write_text('{"a": 1}')
    (root / "in.json").symlink_to("ok.json")                                      # a link inside: followed
    assert Storage(str(root)).read_text(str(root / "in.json")) == '{"a": 1}'


def test_writes_replace_a_symlink_and_never_write_its_target(tmp_path):
    root = tmp_path / "exp"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("another application's file\n")
    before = outside.read_bytes()
    for name in (SUMMARY_FILE, DRIVER_FILE, MANIFEST_FILE):
        (root / name).symlink_to(outside)
        write_text(str(root / name), "{}\n")                    # what summary.py, liveness.py and lico_tune/trust call
        assert not (root / name).is_symlink() and (root / name).read_text() == "{}\n"
    assert outside.read_bytes() == before
    sub = root / "trial_x"
    sub.symlink_to(tmp_path)                                   # a folder leading out of the experiment
    with pytest.raises(UnsafeFile, match="outside"):
        Storage(str(root)).write_text(str(sub / "result.json"), "{}")
    assert not (tmp_path / "result.json").exists()
    assert not temporary_files(root), "a temporary file was left"


def test_a_full_disk_leaves_the_previous_file_whole(tmp_path):
    with Tmpfs(tmp_path / "small", "1m") as fs:
        target = fs.path / "summary.json"
        write_atomic(str(target), b"previous\n")
        fill(fs.path)
        with pytest.raises(OSError) as got:
            write_atomic(str(target), b"x" * 200_000)
        assert got.value.errno == 28                                         # ENOSPC
        assert target.read_bytes() == b"previous\n"
        assert sorted(p.name for p in fs.path.iterdir()) == ["filler", "summary.json"]


# ----------------------------------------------------------------------------- status from facts


@pytest.mark.parametrize("heartbeat, alive, rule", [
    (lambda now: now - STALE_S / 2, True, "s old"),
    (lambda now: now + FUTURE_TOLERANCE_S / 2, True, "s old"),          # small skew: tolerated
    (lambda now: now - STALE_S - 5, False, "last heartbeat is"),
    (lambda now: now + 86400, False, "in the future"),                  # a day ahead: not forever 'running'
    (lambda now: 1e308, False, "in the future"),
    (lambda now: float("inf"), False, "not a time"),
    (lambda now: "soon", False, "not a time"),
])
def test_a_driver_on_another_host_is_judged_by_the_readers_clock(tmp_path, heartbeat, alive, rule):
    now = time.time()
    rec = {"pid": 4242, "host": "elsewhere-" + socket.gethostname(), "proc_start": "1", "started": now - 100,
           "heartbeat": heartbeat(now), "ended": None, "outcome": None}
    got, why = driver_verdict(rec, now)
    assert got is alive and rule in why and "cannot be checked" in why, (got, why)
    (tmp_path / DRIVER_FILE).write_text(json.dumps(rec))          # json writes inf as Infinity, read back as inf
    state = driver_state(Storage(str(tmp_path)), str(tmp_path))
    assert state.live is alive and state.state == ("running" if alive else "interrupted"), state
    assert rule in state.why, state.why                             # the report and dashboard say which rule decided
