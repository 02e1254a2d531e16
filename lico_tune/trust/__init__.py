"""What `resume` trusts: the files Ray will unpickle, signed with a key only this user holds.

Ray Tune's restore runs code from an experiment's files: `tuner.pkl` is a cloudpickle; the newest
`experiment_state-*.json` may embed pickles (a `CLOUDPICKLE_FALLBACK` value, every trial's
hex-pickled parts); every other `*.json` and `*.pkl` at the experiment's top level is copied to
the driver and the searcher's and callbacks' states among them are unpickled
(`basic-variant-state-*.json`, `search_gen_state-*.json`, `searcher-state-*.pkl`,
`callback-states-*.pkl`); a trial's `error.pkl` is unpickled for the result grid (Ray 2.60:
tuner_internal.py, tune_controller.py `resume`, experiment_state.py `sync_down_experiment_state`,
utils/util.py `_load_newest_checkpoint`, searcher.py, callback.py, trial.py `get_pickled_error`).
A checksum stored beside those files stops accidents, not anyone who can write the directory (a
shared bucket, a colleague's folder): they rewrite the checksum too.

So the driver signs them: MANIFEST_FILE lists the SHA-256 of each (and of the plan, RUN_FILE),
and an HMAC-SHA256 of that list with a per-user secret key kept outside every storage root
(KEY_ENV, default DEFAULT_KEY_FILE, created 0600 on first use). A name may list two digests while
the driver rewrites it (tune/signed_fs.py writes the manifest accepting old and new before the file,
so a crash in between is no tampering). `sign_experiment` signs a directory as found (`run` once it
wrote the plan, `lico-tune trust DIR`); `verified_bytes` refuses (UntrustedExperiment), before
anything is unpickled, a missing, old (unsigned), edited or foreign manifest, a file whose digest
differs, and a pickle-bearing file it does not list, and returns the bytes it checked, which are
what Ray then reads (signed_fs). A listed file that is gone is no risk (nothing runs from it) and
is allowed: moving the newest state aside is how a damaged one is skipped.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Optional

from ..errors import UntrustedExperiment
from .keyfile import key_file_problem
from ..layout import (DEFAULT_KEY_FILE, DRIVER_FILE, KEY_ENV, LOCK_FILE, MANIFEST_FILE, RAY_ERROR_PICKLE,
                     RUN_FILE, SUMMARY_FILE)
from ..storage import Storage, join, normalise_root
from ..storage.safe_files import parse_json, read_key_text

FORMAT = "lico-tune-hmac-sha256/1"
# lico-tune's own JSON at the top level: read with json.loads only, never by Ray's restore code.
DATA_ONLY = frozenset({MANIFEST_FILE, DRIVER_FILE, SUMMARY_FILE, LOCK_FILE})
PICKLE_SUFFIXES = (".pkl", ".json")     # what Ray's sync_down_experiment_state copies and may unpickle


def key_file() -> Path:
    return Path(os.environ.get(KEY_ENV) or DEFAULT_KEY_FILE).expanduser()


def load_key() -> bytes:
    """This user's signing key (made on first use: 32 random bytes, hex, mode 0600)."""
    path = key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        except FileExistsError:          # another driver made it a moment ago
            time.sleep(0.2)
    try:
        st = path.stat()
        text = read_key_text(str(path), "the signing key", f"Remove it (a new key is made on first use; sign your "
                             f"experiments again with `lico-tune trust DIR`), or point {KEY_ENV} at your key file.").strip()
    except OSError as exc:
        raise UntrustedExperiment(f"the signing key {path} cannot be read ({exc.strerror}); lico-tune signs the "
                                  f"experiment files `resume` unpickles with it. Make it readable by you alone "
                                  f"(chmod 600 {path}), or point {KEY_ENV} at another key file.") from None
    if why := key_file_problem(st):      # keyfile.py: owner only, or a group no other account is in
        raise UntrustedExperiment(f"the signing key {path} {why}, so they could sign experiment files that "
                                  f"`resume` would unpickle. Run `chmod 600 {path}` (and sign again with "
                                  f"`lico-tune trust DIR` what you have checked), or point {KEY_ENV} at a key "
                                  f"file of your own (docs/cluster.md: a Kubernetes Secret's key).")
    if len(text) < 32:
        raise UntrustedExperiment(f"the signing key {path} is too short ({len(text)} characters, at least 32); "
                                  f"remove it (a new one is made on first use) and sign your experiments again "
                                  f"with `lico-tune trust DIR`.")
    return text.encode()


def _key_for(experiment_dir: str) -> bytes:
    """load_key, refused when the key lies inside the experiment (whoever writes there could read it)."""
    if "://" not in experiment_dir and Path(experiment_dir).resolve() in key_file().resolve().parents:
        raise UntrustedExperiment(f"the signing key {key_file()} lies inside the experiment {experiment_dir}; anyone "
                                  f"who can write the directory could read it. Point {KEY_ENV} at a file outside "
                                  f"every storage root (default {DEFAULT_KEY_FILE}).")
    return load_key()


def signed_files(storage: Storage, experiment_dir: str) -> list[str]:
    """The files a resume reads as code or plan, relative to the experiment: RUN_FILE, every
    top-level *.pkl / *.json but lico-tune's own data files, and each trial's error.pkl (a trial's
    params.pkl is only written by Ray 2.60, never read)."""
    names = []
    for e in storage.list(experiment_dir):
        if e.is_dir:
            names += [f"{e.name}/{f.name}" for f in storage.list(join(experiment_dir, e.name))
                      if not f.is_dir and f.name == RAY_ERROR_PICKLE]
        elif e.name == RUN_FILE:
            names.append(e.name)
    return sorted(names + _top_level(storage, experiment_dir))


def _mac(key: bytes, files: dict[str, str]) -> str:
    body = json.dumps({"format": FORMAT, "files": files}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _top_level(storage: Storage, path: str) -> list[str]:
    return [e.name for e in storage.list(path)
            if not e.is_dir and e.name.endswith(PICKLE_SUFFIXES) and e.name not in DATA_ONLY]


def manifest_text(experiment_dir: str, files: dict[str, "str | list[str]"]) -> str:
    """The signed manifest of `files` ({name: SHA-256, or the list of SHA-256 a name may have: see
    tune/signed_fs.py}), as written to MANIFEST_FILE."""
    key = _key_for(normalise_root(experiment_dir))
    return json.dumps({"format": FORMAT, "files": files, "hmac": _mac(key, files)}, indent=1, sort_keys=True) + "\n"


def sign_experiment(experiment_dir: str) -> dict[str, str]:
    """Sign every file `signed_files` finds, as it is (`lico-tune trust`, and `run` once it wrote
    the plan); writes MANIFEST_FILE (unchanged bytes when nothing changed); returns {file: SHA-256}."""
    experiment_dir = normalise_root(experiment_dir)
    storage = Storage(experiment_dir)
    files: dict[str, str] = {}
    for name in signed_files(storage, experiment_dir):
        data = storage.read_bytes(join(experiment_dir, name))
        if data is not None:
            files[name] = hashlib.sha256(data).hexdigest()
    text = manifest_text(experiment_dir, files)
    path = join(experiment_dir, MANIFEST_FILE)
    if storage.read_text(path) != text:
        storage.write_text(path, text)
    return files


def _digests(value) -> list[str]:
    """A manifest entry's accepted SHA-256s: one, or a non-empty list (a write in flight); [] if malformed."""
    values = value if isinstance(value, list) else [value]
    return values if values and all(isinstance(v, str) and len(v) == 64 for v in values) else []


def _refuse(experiment_dir: str, what: str) -> UntrustedExperiment:
    return UntrustedExperiment(
        f"{what}; resume refuses to load {experiment_dir}, because Ray unpickles its state files and a "
        f"replaced one would run its code (lico-tune signs them with your key {key_file()}, which no one else "
        f"has). If you or a colleague made or copied this experiment and you trust its files (check who could "
        f"write the directory), sign it on purpose with `lico-tune trust {experiment_dir}` and resume again; "
        f"otherwise keep the trials' results and start a new experiment with `lico-tune run`.")


def verify_experiment(experiment_dir: str) -> dict[str, str]:
    """Refuse (UntrustedExperiment) unless every file `signed_files` finds is listed in a manifest
    signed with this user's key and has the digest listed there. Returns {file: SHA-256} verified."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in verified_bytes(experiment_dir).items()}


def verified_bytes(experiment_dir: str) -> dict[str, bytes]:
    """verify_experiment's check; returns the bytes it verified ({file: bytes}), to be handed to Ray
    as they are (tune/verified_fs.py): read again from the directory, a file could have been swapped."""
    experiment_dir = normalise_root(experiment_dir)
    storage = Storage(experiment_dir)
    where = join(experiment_dir, MANIFEST_FILE)
    text = storage.read_text(where)
    if text is None:
        raise _refuse(experiment_dir, f"{where} is missing (the signed list of the files resume unpickles)")
    try:
        data = parse_json(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and "sha256" in data and "hmac" not in data:
        raise _refuse(experiment_dir, f"{where} is in the old unsigned format (SHA-256 sums that anyone who can "
                                      f"write the directory can rewrite)")
    files = data.get("files") if isinstance(data, dict) else None
    mac = data.get("hmac") if isinstance(data, dict) else None
    if (not isinstance(files, dict) or not isinstance(mac, str) or data.get("format") != FORMAT
            or not all(isinstance(k, str) and _digests(v) for k, v in files.items())):
        raise _refuse(experiment_dir, f"{where} is not a signed manifest (damaged or edited)")
    if not hmac.compare_digest(mac, _mac(_key_for(experiment_dir), files)):
        raise _refuse(experiment_dir, f"{where} was not signed with your key (edited, or signed by another user "
                                      f"or with a key since replaced)")
    verified: dict[str, bytes] = {}
    for name in signed_files(storage, experiment_dir):
        data_now: Optional[bytes] = storage.read_bytes(join(experiment_dir, name))
        if data_now is None:
            continue
        if name not in files:
            raise _refuse(experiment_dir, f"{join(experiment_dir, name)} is not in the signed manifest {MANIFEST_FILE} "
                                          f"(a file Ray would load that lico-tune never signed)")
        digest = hashlib.sha256(data_now).hexdigest()
        if not any(hmac.compare_digest(d, digest) for d in _digests(files[name])):
            raise _refuse(experiment_dir, f"{join(experiment_dir, name)} changed since lico-tune signed it (edited, "
                                          f"replaced or damaged)")
        verified[name] = data_now
    return verified
