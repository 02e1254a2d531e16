"""Where a result came from, snapshotted into every trial's checkpoint and metrics.json:
package versions (importlib.metadata: nothing is imported, ray least of all), the git commit and
whether the checkout had changes (untracked files count), the hardware (CPU and GPU model, CUDA
and cuDNN versions), the determinism settings in force (threads, deterministic algorithms), the
dataset's identity (Debian package version and/or a SHA-256 of its files) and the text weights'
SHA-256. Checksums are cached on disk by (path, size, mtime), so a trial does not re-hash 30 MB."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable, Optional

from .layout import CACHE_DIR

PACKAGES = {"python": None, "lico-tune": "lico-tune", "torch": "torch", "torchvision": "torchvision",
            "numpy": "numpy", "transformers": "transformers", "open_clip": "open_clip_torch", "ray": "ray",
            "optuna": "optuna", "scipy": "scipy", "scikit-learn": "scikit-learn", "POT": "POT",
            "grad-cam": "grad-cam"}
CHECKSUM_CACHE = CACHE_DIR / "checksums.json"
FULL_HASH_LIMIT = 256 * 2**20        # folders above this are identified by a listing (names, sizes)


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_version() -> str:
    return _version("lico-tune") or "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    return {name: (platform.python_version() if dist is None else _version(dist)) for name, dist in PACKAGES.items()}


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """{git_sha, git_dirty, git_changes}: the commit of the checkout lico_tune runs from, and how
    many paths differ from it, untracked (not ignored) files included."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=here,
                                capture_output=True, text=True, timeout=5).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None, "git_changes": None}
    return {"git_sha": f"{sha}-dirty" if status else sha, "git_dirty": bool(status), "git_changes": len(status)}


def git_sha() -> Optional[str]:
    return git_state()["git_sha"]


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags_digest() -> Optional[str]:
    """sha256 (16 hex digits) of the CPU's feature flags (/proc/cpuinfo): two machines that report the
    same model name can still differ in instruction sets, and with them in floating-point results."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
                return hashlib.sha256(flags.encode()).hexdigest()[:16]
    except OSError:
        pass
    return None


def hardware() -> dict:
    import torch
    cuda = torch.cuda.is_available()
    # cpu_capability: the kernels torch dispatches to (DEFAULT, AVX2, AVX512...): a rerun on a machine
    # with another one computes other bits (measured: a 32-step study trial rerun on another EPYC VM).
    return {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_flags": cpu_flags_digest(),
            "gpu": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None}


# ----------------------------------------------------------------------------- checksums


def _load_cache() -> dict:
    try:
        return json.loads(CHECKSUM_CACHE.expanduser().read_text())
    except (OSError, ValueError):
        return {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, cached by (path, size, mtime_ns)."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache = _load_cache()
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    cache[key] = h.hexdigest()
    try:
        target = CHECKSUM_CACHE.expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, target)
    except OSError:
        pass    # a read-only home: the checksum is still returned, only not kept
    return cache[key]


def files_sha256(paths: Iterable[Path], base: Optional[Path] = None) -> dict:
    """One digest over several files (each file's name relative to `base` and SHA-256); above
    FULL_HASH_LIMIT bytes, a digest of the listing (names and sizes) instead."""
    paths = sorted(Path(p) for p in paths)
    total = sum(p.stat().st_size for p in paths)
    h = hashlib.sha256()
    full = total <= FULL_HASH_LIMIT
    for p in paths:
        name = str(p.relative_to(base)) if base else p.name
        h.update(f"{name}\0{file_sha256(p) if full else p.stat().st_size}\n".encode())
    return {"sha256" if full else "listing_sha256": h.hexdigest(), "files": len(paths), "bytes": total}


def dataset_identity(data_cfg) -> dict:
    """Which data a trial read, as the dataset's registry row names it (data/registry.py `identity`:
    its folder, Debian package version where it is one, a digest of its files)."""
    from .data.registry import REGISTRY
    try:
        return REGISTRY[data_cfg.name].identity(data_cfg, files_sha256)
    except OSError as exc:
        return {"name": data_cfg.name, "error": f"{type(exc).__name__}: {exc}"}


def text_weights_identity(text_cfg) -> dict:
    """The frozen text encoder's weights, as its registry row names them (models/text ENCODERS
    `identity`: a SHA-256 of the weight file(s) where they are on disk)."""
    from .models.text import ENCODERS
    out = {"encoder": text_cfg.encoder, "model": text_cfg.model, "pretrained": getattr(text_cfg, "pretrained", None)}
    try:
        out.update(ENCODERS[text_cfg.encoder].identity(text_cfg, files_sha256))
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def provenance(cfg=None) -> dict:
    """The flat record every trial carries (lico_tune_version, git_sha for the results table) and,
    given the trial's config, `environment`: versions, hardware, determinism, data, text weights."""
    out = {"lico_tune_version": package_version(), **git_state()}
    if cfg is not None:
        import torch

        from .compute import determinism_state as state, resolve_determinism as resolve
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(auto if cfg.train.device == "auto" else cfg.train.device)
        det, threads = resolve(cfg.train.deterministic, cfg.train.threads, device)
        # 'requested' from the config (right wherever this is called); the rest as torch has it now
        # (right inside train_trial, after determinism.configure).
        determinism = {**state(), "requested": {"deterministic": det, "threads": threads}}
        out["environment"] = {"versions": versions(), "hardware": hardware(), "determinism": determinism,
                              "dataset": dataset_identity(cfg.data),
                              "text_weights": text_weights_identity(cfg.text) if cfg.lico.enabled else None}
    return out
