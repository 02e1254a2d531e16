"""The one error a missing dataset raises: what is missing, where we looked, how to get it."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import BadInput


class DatasetMissing(BadInput, FileNotFoundError):
    """A dataset that is not on disk (or could not be downloaded).

    The message is one paragraph: which dataset, every place that was searched, and the command
    or spec setting that fetches it.
    """


def missing(name: str, looked: Iterable[str | Path], fix: str, why: str = "not found") -> DatasetMissing:
    places = ", ".join(str(p) for p in looked) or "(nowhere)"
    return DatasetMissing(f"Dataset '{name}' {why}: looked in {places}. {fix}")
