"""Can a file the plan needs be had now? Present in its cache, or downloadable: ONE request with a
short timeout, made once in the driver before any trial starts (preflight.py), so that an offline
machine fails in seconds with the fix instead of every trial failing, and being retried, later.

    probe(url) -> None (it answers) or why not ('URLError: ...', 'no answer within 5 s')

What a dataset or text encoder would download is its registry entry's to say (data/registry.py,
models/text: `require(cfg, probe)`); this module only asks. No Ray.
"""
from __future__ import annotations

import threading
import urllib.error
import urllib.request
from functools import lru_cache
from typing import Optional

TIMEOUT_S = 5.0


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


def answer(url: str) -> Optional[str]:
    """probe(url) as registry entries' `require(cfg, probe)` is given it: None, or why not and the try made."""
    why = probe(url)
    return None if why is None else f"{why} (one try, timeout {TIMEOUT_S:g} s)"
