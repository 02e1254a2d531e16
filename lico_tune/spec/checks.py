"""Checks of a spec that pydantic's field types cannot make alone; `plan_search` calls them, so
`lico-tune validate` and `lico-tune run` refuse exactly the same specs.

- `check_name`: experiment (--name) and arm names become directories and Markdown table cells
  (limits.py `name_problem`, the rule the spec's name follows too).
- `check_distribution`: a searched field's distribution fits the field (no uniform on an integer
  field such as train.epochs; finite bounds; no value twice in a grid or choice).
- `check_storage`: the results root can be created (a local path under a writable directory).
- `check_optuna_url`: search.optuna_storage parses as an SQLAlchemy URL.
Each raises SpecError naming the field and the fix. No Ray, no torch.
"""
from __future__ import annotations

import math
import os
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..errors import SpecError
from .document import TrialConfig
from .limits import name_problem


def check_name(name: str, what: str) -> None:
    """`what` is how the user gave it, e.g. "--name" or "ablation: arm name"."""
    problem = name_problem(name) if isinstance(name, str) else "not a name"
    if problem is not None:
        shown = name.encode("unicode_escape").decode() if isinstance(name, str) else name
        shown = shown if len(shown) <= 60 else shown[:40] + "..."
        raise SpecError(f"{what} '{shown}': {problem}.")


def field_type(path: str) -> Any:
    """The annotation of a trial field path ('train.epochs' -> int), Optional unwrapped."""
    model: type[BaseModel] = TrialConfig
    ann: Any = None
    for part in path.split("."):
        ann = model.model_fields[part].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) is typing.Union and len(args) == 1:
        ann = args[0]
    return ann


def check_distribution(where: str, path: str, kind: str, args: list) -> None:
    """Every check of a search.space distribution's arguments, in one place: finite numbers, no
    continuous draws on an integer field, ordered bounds."""
    numeric = [a for a in args if isinstance(a, float)]
    if kind != "choice" and any(not math.isfinite(a) for a in numeric):
        raise SpecError(f"{where}: {kind} bounds must be finite numbers, got {args}.")
    if kind in ("grid", "choice") and any(isinstance(a, float) and not math.isfinite(a) for a in args):
        raise SpecError(f"{where}: values must be finite numbers, got {args}.")
    if kind in ("grid", "choice"):
        _check_distinct(where, kind, args)
    if field_type(path) is int and kind in ("uniform", "loguniform", "quniform"):
        raise SpecError(f"{where}: {path} takes whole numbers but {kind} draws fractions; use "
                        f"{{randint: [low, high]}} (high excluded) or {{grid: [...]}}.")
    if kind != "grid":
        _check_range(where, kind, args)


def _check_distinct(where: str, kind: str, args: list) -> None:
    """No value twice: a repeated grid value runs its cells twice and the statistics count them as
    independent seeds or configurations (0 and 0.0 are the same value)."""
    for i, a in enumerate(args):
        if any(a == b and isinstance(a, bool) == isinstance(b, bool) for b in args[:i]):
            raise SpecError(f"{where}: the value {a!r} appears twice in {kind} {args}; list each value once "
                            f"(use search.repeats or num_samples to run a value more than once).")


def _check_range(where: str, kind: str, args: list) -> None:
    """low < high (> 0 for loguniform), integer randint bounds, q > 0."""
    if kind == "choice":
        return
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise SpecError(f"{where}: {kind} takes numbers, got {args}.")
    low, high = args[0], args[1]
    if not low < high:
        raise SpecError(f"{where}: {kind} needs low < high, got [{low}, {high}].")
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{where}: loguniform needs low > 0, got {low}.")
    if kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise SpecError(f"{where}: randint takes integers [low, high) (high excluded), got {args}.")
    if kind == "quniform" and not args[2] > 0:
        raise SpecError(f"{where}: quniform's q must be > 0, got {args[2]}.")


def distribution_bounds(kind: str, args: list) -> list:
    """The extreme values a distribution can draw (randint's high is excluded): the plan checks
    each cell at each of them."""
    if kind == "choice":
        return list(args)
    if kind == "randint":
        return [args[0], args[1] - 1]
    return [args[0], args[1]]


def check_storage(storage: str) -> None:
    """A local results root must be creatable: its nearest existing ancestor a writable directory."""
    if "://" in storage:
        return
    p = Path(storage)
    while not os.path.exists(p) and p != p.parent:      # os.path: False, not an error, where it may not look
        p = p.parent
    if p.exists() and not p.is_dir():
        raise SpecError(f"storage '{storage}': {p} is a file, not a directory. Pass a directory "
                        f"(--storage DIR or the spec's storage).")
    special = str(p.resolve()).split("/")[1:2] in (["proc"], ["sys"], ["dev"])
    if special or not os.access(p, os.W_OK | os.X_OK):
        raise SpecError(f"storage '{storage}': cannot create a results root there ({p} is not a writable "
                        f"directory). Pass a directory you can write to, e.g. --storage ~/lico-tune-results.")


def check_optuna_url(url: str | None) -> None:
    if url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise SpecError(f"search.optuna_storage '{url}': not a database URL ({exc}). Write an SQLAlchemy URL "
                        f"such as sqlite:////abs/path/optuna.db or postgresql://user@host/db, or leave it "
                        f"out (SQLite in the experiment directory).") from None
