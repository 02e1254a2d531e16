"""Can a file the plan needs be had now? Present in its cache, or downloadable: ONE request with a
short timeout, made once in the driver before any trial starts (preflight.py), so that an offline
machine fails in seconds with the fix instead of every trial failing, and being retried, later.

    probe(url) -> None (it answers) or why not ('URLError: ...', 'no answer within 5 s')
    clip_weights_cached(arch, tag) -> the cached file, or None; clip_weights_url(arch, tag)

No Ray; open_clip and huggingface_hub are imported only when a spec names CLIP weights.
"""
from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Optional

TIMEOUT_S = 5.0
OFFLINE_ENV = ("HF_HUB_OFFLINE",)        # what huggingface_hub (open_clip's downloader) honours


@lru_cache(maxsize=64)
def probe(url: str, timeout_s: float = TIMEOUT_S) -> Optional[str]:
    """None when `url` answers a HEAD request within timeout_s (any HTTP status below 500 but 404
    counts: the server is there and the file may need a redirect); else one line saying why.
    The request runs in a thread, so a name lookup that hangs cannot hold the driver longer."""
    result: list[Optional[str]] = ["no answer within {:g} s".format(timeout_s)]

    def ask() -> None:
        req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "lico-tune-preflight"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s):
                result[0] = None
        except urllib.error.HTTPError as exc:
            result[0] = None if exc.code < 500 and exc.code != 404 else f"HTTP {exc.code}"
        except Exception as exc:   # URLError, timeout, ssl...: offline or unreachable
            result[0] = f"{type(exc).__name__}: {str(getattr(exc, 'reason', exc)).splitlines()[0][:200]}"

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    t.join(timeout_s + 1.0)
    return result[0]


def hub_offline() -> Optional[str]:
    """The environment variable that forbids Hugging Face downloads, if one is set."""
    for name in OFFLINE_ENV:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def _hf_names(cfg: dict) -> tuple[str, list[str]]:
    """(repo id, candidate file names) of an open_clip pretrained config's hf_hub entry, as
    open_clip.pretrained.download_pretrained_from_hf looks for them (safetensors first)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    repo, filename = os.path.split(cfg["hf_hub"])
    filename = filename or HF_WEIGHTS_NAME
    names = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []
    if filename.endswith((".bin", ".pt", ".pth")):
        names.append(filename.rsplit(".", 1)[0] + ".safetensors")
    return repo, [*names, filename]


def clip_weights_cached(cfg: dict) -> Optional[str]:
    """The cached checkpoint of an open_clip pretrained config (HF cache, or ~/.cache/clip for URL
    downloads), or None."""
    if cfg.get("file"):
        return cfg["file"] if Path(cfg["file"]).is_file() else None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        repo, names = _hf_names(cfg)
        for name in names:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str):
                return hit
    if cfg.get("url"):
        local = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if local.is_file():
            return str(local)
    return None


def clip_weights_url(cfg: dict) -> Optional[str]:
    """Where open_clip would download them from (the Hugging Face hub when the config names a repo)."""
    if cfg.get("hf_hub"):
        repo, names = _hf_names(cfg)
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
        return f"{endpoint}/{repo}/resolve/main/{names[-1]}"
    return cfg.get("url") or None
