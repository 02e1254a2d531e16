"""The signing key's mode and owner rule (lico_tune/trust/keyfile.py), on real files: a key only its owner
reads, and a Kubernetes Secret's key (root-owned, mode 0440, group = the pod's fsGroup) read by the
image's user, are accepted; a key others can read is refused. The cases that need another owner or
another user run `trust.load_key` in a process that becomes uid 1000 (the Ray image's user), which
needs root here (chown, setuid); the machine's test runner is root."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from lico_tune.trust.keyfile import key_file_problem, other_members
from ray_helpers import REPO

FS_GROUP = 54321          # a pod's fsGroup: a group no account of this machine has


@pytest.fixture
def key_dir():
    d = tempfile.mkdtemp(prefix="lico-key-")      # not under pytest's 0700 tmp: uid 1000 must reach it
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _key(key_dir, mode, uid=None, gid=None):
    path = os.path.join(key_dir, "manifest.key")
    with open(path, "w") as f:
        f.write("a" * 64 + "\n")
    if uid is not None:
        os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode, refused", [(0o600, False), (0o400, False), (0o644, True), (0o604, True),
                                           (0o660, True), (0o620, True)])
def test_owner_only_is_accepted_and_world_or_group_write_refused(key_dir, mode, refused):
    st = os.stat(_key(key_dir, mode))
    why = key_file_problem(st, uid=st.st_uid, groups={st.st_gid})
    assert (why is not None) == refused, why
    if refused:
        assert why == f"can be read or written by other users (mode {mode:o})"


def test_a_group_readable_key_is_accepted_only_in_a_group_of_its_own(key_dir):
    st = os.stat(_key(key_dir, 0o440))
    me = st.st_uid
    assert key_file_problem(st, uid=me, groups={st.st_gid + 1}).startswith(
        f"is readable by group {st.st_gid}" if not _named(st.st_gid) else "is readable by group ")
    shared = other_members(st.st_gid, me)
    why = key_file_problem(st, uid=me, groups={st.st_gid})
    assert (why is None) == (not shared), why      # accepted exactly when no other account is in the group
    if shared:
        assert "which other accounts share" in why and shared[0] in why


def _named(gid):
    import grp
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def _load_key_as(uid: int, groups: list[int], path: str) -> subprocess.CompletedProcess:
    """trust.load_key in a process that became uid `uid` in `groups` (setuid after its imports: the
    interpreter lives under /root here, which uid 1000 cannot read); the kernel checks the reads."""
    code = (f"import os, lico_tune.trust as t; os.setgroups({groups!r}); os.setgid({uid}); os.setuid({uid}); "
            f"assert os.geteuid() == {uid}; t.load_key(); print('accepted')")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "LICO_TUNE_KEY_FILE": path, "HOME": "/nonexistent",
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd="/")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to root and setuid to uid 1000 need root")


@needs_root
def test_a_kubernetes_secret_key_is_read_by_the_image_user(key_dir):
    """The Secret of deploy/kuberay/rayjob.yaml: root:fsGroup 0440, read by uid 1000 in fsGroup."""
    path = _key(key_dir, 0o440, uid=0, gid=FS_GROUP)
    assert other_members(FS_GROUP, 1000) == []
    out = _load_key_as(1000, [FS_GROUP], path)
    assert out.returncode == 0 and out.stdout.strip() == "accepted", out.stderr[-2000:]
    # The same key readable by everyone is refused, though uid 1000 can read it.
    os.chmod(path, 0o444)
    out = _load_key_as(1000, [FS_GROUP], path)
    assert out.returncode != 0 and "can be read or written by other users (mode 444)" in out.stderr
    # Without the group (no fsGroup): the image's user cannot read a root-owned 0400 key at all.
    os.chmod(path, 0o400)
    out = _load_key_as(1000, [], path)
    assert out.returncode != 0 and "cannot be read (Permission denied)" in out.stderr


@needs_root
def test_a_key_readable_by_a_group_other_accounts_share_is_refused(key_dir):
    """Group 1 (daemon) is the primary group of the account daemon: its members could read the key."""
    import grp
    gid = 1
    assert other_members(gid, 1000), "this test needs a group that another account has"
    path = _key(key_dir, 0o440, uid=0, gid=gid)
    out = _load_key_as(1000, [gid], path)
    assert out.returncode != 0, out.stdout
    assert f"is readable by group {grp.getgrgid(gid).gr_name} (mode 440), which other accounts share" in out.stderr
    # Another user's own key (not root's, not this user's) is refused even in a group of its own.
    path = _key(key_dir, 0o440, uid=1001, gid=FS_GROUP)
    out = _load_key_as(1000, [FS_GROUP], path)
    assert out.returncode != 0 and "belongs to another user (1001" in out.stderr
