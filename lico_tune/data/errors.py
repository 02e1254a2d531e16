"""The one error a missing dataset raises: what is missing, where we looked, how to get it; and
the kinds of a registry entry's `require` and `identity` (data/registry.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from ..errors import BadInput


class DatasetMissing(BadInput, FileNotFoundError):
    """A dataset that is not on disk (or could not be downloaded).

    The message is one paragraph: which dataset, every place that was searched, and the command
    or spec setting that fetches it.
    """


def missing(name: str, looked: Iterable[str | Path], fix: str, why: str = "not found") -> DatasetMissing:
    places = ", ".join(str(p) for p in looked) or "(nowhere)"
    return DatasetMissing(f"Dataset '{name}' {why}: looked in {places}. {fix}")


# A registry entry's `require(cfg, probe)` asks `probe(url)` whether a URL the trials would download
# from answers now (None) or why not (one line); plan/preflight.py makes the one short request.
Probe = Callable[[str], Optional[str]]
# Its `identity(cfg, digest)` names the files read by `digest(files, base)`: their SHA-256 (provenance.py,
# cached; file names relative to `base`).
Digest = Callable[[Sequence[Path], Optional[Path]], dict]


def not_downloadable(name: str, url: str, why: str, looked: Iterable[str | Path], what: str,
                     command: str) -> DatasetMissing:
    """A dataset that trials would download (data.download: true) whose URL does not answer now."""
    return missing(name, looked, f"data.download is true, but it cannot be downloaded now: {url} gave {why}; "
                   f"this machine may be offline. Fetch it where there is internet (`{command}`) and copy it "
                   f"here, or set data.root to a folder that holds {what}.", why="is not on this machine")
