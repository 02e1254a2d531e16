"""Who may read the signing key (lico_tune/trust): the rule on its file's mode and owners.

Accepted:
- readable by its owner alone (0600, 0400): the key a user makes on first use;
- also readable by one group (0640, 0440; never group-writable, never world-readable) when this
  process runs in that group, the file belongs to this user or to root, and no other account of
  this system is in the group (neither listed as a member nor having it as its primary group). That
  is a Kubernetes Secret mounted with the pod's `fsGroup` (root-owned, mode 0440, group fsGroup):
  only the pod's own containers run in that group, and the image's user (not root) can read it.
Refused: anything others can read or write (world bits, group write), and a group-readable key
whose group other accounts share (on a shared machine, `users`, a project group): they could read
the key and sign experiment files that `resume` would unpickle.
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Optional


def other_members(gid: int, uid: int) -> list[str]:
    """The accounts of this system other than `uid` that are in group `gid`."""
    me = _name(uid)
    try:
        listed = set(grp.getgrgid(gid).gr_mem)
    except KeyError:                      # a group without a name here (e.g. a pod's fsGroup)
        listed = set()
    primary = {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid}
    return sorted((listed | primary) - {me})


def _name(uid: int) -> Optional[str]:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def key_file_problem(st: os.stat_result, uid: Optional[int] = None,
                     groups: Optional[set[int]] = None) -> Optional[str]:
    """Why a key file with this stat may be read or written by others (a clause after 'the signing
    key PATH'), or None when it may not. `uid`, `groups`: this process's (default: its own)."""
    uid = os.geteuid() if uid is None else uid
    groups = ({os.getegid(), *os.getgroups()} if groups is None else groups)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o027:
        return f"can be read or written by other users (mode {mode:o})"
    if not mode & 0o040:
        return None
    if st.st_uid not in (uid, 0):
        return f"belongs to another user ({_name(st.st_uid) or st.st_uid}) and is readable by a group (mode {mode:o})"
    if st.st_gid not in groups:
        return f"is readable by group {_group(st.st_gid)}, which this process is not in (mode {mode:o})"
    if others := other_members(st.st_gid, uid):
        return (f"is readable by group {_group(st.st_gid)} (mode {mode:o}), which other accounts share "
                f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''})")
    return None
