"""A damaged lock file (lico_tune/trust/lock.py) is refused in one paragraph that names the file and
how to fix it, never a traceback from formatting its fields, and is left as it was."""
from __future__ import annotations

import os
import socket
import time

import pytest

from lico_tune.errors import BadInput, ExperimentBusy
from lico_tune.layout import LOCK_FILE
from lico_tune.trust.lock import busy, experiment_lock


def _hand_written(exp, started_json: str) -> str:
    """A lock file naming this process (alive, on this host) with `started` as the JSON text given."""
    exp.mkdir(exist_ok=True)
    text = ('{"pid": %d, "host": "%s", "started": %s, "heartbeat": %r, "ended": null, "outcome": null}'
            % (os.getpid(), socket.gethostname(), started_json, time.time()))
    (exp / LOCK_FILE).write_text(text)
    return text


def _one_paragraph(msg: str) -> str:
    assert msg.strip() and "\n" not in msg and "Traceback" not in msg, msg
    return msg


@pytest.mark.parametrize("started_json, shown", [
    ("1e308", "1e+308"),                # past year 9999: datetime cannot hold it
    ("1e400", "Infinity"),              # JSON reads it as inf
    ("NaN", "NaN"),
    ('"yesterday"', '"yesterday"'),     # not a number
    ("true", "true"),                   # a bool is no time, though Python counts it as an int
    ("-5", "-5"),                       # before 1970
])
def test_a_damaged_start_time_is_refused_naming_the_file_and_the_fix(tmp_path, started_json, shown):
    exp = tmp_path / "exp"
    text = _hand_written(exp, started_json)
    with pytest.raises(ExperimentBusy) as err:
        with experiment_lock(str(exp), say=lambda m: pytest.fail(f"took over a live holder's lock: {m}")):
            pytest.fail("the lock was granted")
    msg = _one_paragraph(str(err.value))
    assert isinstance(err.value, BadInput)                       # the CLI: exit 2, this paragraph
    assert f"The lock file {exp / LOCK_FILE} is damaged: its 'started' is {shown}, not a time" in msg
    assert f"pid {os.getpid()} on host {socket.gethostname()}, which lico-tune judges alive" in msg
    assert f"remove the file ({exp / LOCK_FILE}) and run the command again" in msg
    assert (exp / LOCK_FILE).read_text() == text                  # left as it was


def test_a_sound_record_of_a_live_holder_names_its_start_time(tmp_path):
    exp = tmp_path / "exp"
    _hand_written(exp, "1700000000.5")
    with pytest.raises(ExperimentBusy) as err:
        with experiment_lock(str(exp), say=print):
            pytest.fail("the lock was granted")
    msg = _one_paragraph(str(err.value))
    assert "damaged" not in msg
    assert f"pid {os.getpid()} on host {socket.gethostname()}, started 2023-11-1" in msg   # 14 or 15: the time zone


@pytest.mark.parametrize("rec, damage", [
    ({"pid": "12", "host": "h", "started": 1.0}, "its 'pid' is \"12\", not a process id"),
    ({"pid": 0, "host": "h", "started": 1.0}, "its 'pid' is 0, not a process id"),
    ({"pid": 12, "host": "a\nb", "started": 1.0}, "its 'host' is \"a\\nb\", not a host name"),
    ({"pid": 12, "host": "x" * 300, "started": 1.0}, "its 'host' is \"" + "x" * 59 + "..., not a host name"),
    ({"pid": [1], "host": "a\nb", "started": "soon"}, "its 'pid' is [1], not a process id; its 'host' is \"a\\nb\", "
                                                       "not a host name; its 'started' is \"soon\", not a time"),
])
def test_a_damaged_pid_or_host_is_named_on_one_line(rec, damage):
    """The flock holder's record is read as it is (lock.py's _holder_record): its fields too."""
    msg = _one_paragraph(str(busy("/e", rec)))
    assert f"The lock file /e/{LOCK_FILE} is damaged: {damage}." in msg
    if rec["pid"] == [1]:
        assert 'names pid [1] on host "a\\nb", which lico-tune judges alive' in msg


def test_a_holder_between_its_flock_and_its_record_is_not_called_damaged():
    msg = _one_paragraph(str(busy("/e", {})))
    assert "pid ? on host ?, started at an unknown time" in msg and "damaged" not in msg
