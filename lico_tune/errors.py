"""Error types and the formatting of errors into one line a researcher can act on.

- `BadInput`: the base of every error the user can fix (a spec, a missing dataset or weight file,
  a damaged checkpoint, an output that already exists, a setting this machine cannot run). Its
  message is one paragraph naming what is wrong and the fix; the CLI catches it once, prints it and
  exits 2. Anything else is a bug and keeps its traceback.
- `SpecError`: a spec (or an experiment directory) that cannot be used; its message names the
  field path or file and the fix.
- `format_errors` / `first_error`: a pydantic ValidationError as `- field.path: message` lines,
  with a "did you mean" for misspelled field names.
- `error_reason`: the exception line of a failed trial's traceback, for summaries and reports.

No third-party import beyond pydantic's types, so every layer (spec, plan, results) can use it.
"""
from __future__ import annotations

import difflib
import re
from typing import Optional


class BadInput(Exception):
    """An error the user can fix; its message names what is wrong and how to fix it (CLI: exit 2)."""


class SpecError(BadInput, ValueError):
    """A spec that cannot be used; the message names the field path and the fix."""


class OutputExists(BadInput, FileExistsError):
    """An output that would overwrite results already there."""


class ExperimentBusy(BadInput, RuntimeError):
    """An experiment another lico-tune driver is running now (its lock is held)."""


class UntrustedExperiment(BadInput):
    """Experiment files `resume` would unpickle that are not signed with this user's key (lico_tune/trust)."""


class UnreadableInput(BadInput, FileNotFoundError):
    """A file or directory the user named that is missing or cannot be read."""


class TrialConfigError(BadInput, ValueError):
    """A trial setting this machine cannot run (no CUDA, fp16 on the CPU, a shortcut that does not fit)."""


def suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _known_fields(model, loc: tuple) -> list[str]:
    """Field names (of the pydantic `model`) at the parent of `loc`, for 'did you mean'."""
    from pydantic import BaseModel
    for part in loc[:-1]:
        if not isinstance(part, str) or part not in model.model_fields:
            return []
        ann = model.model_fields[part].annotation
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def format_errors(exc, model) -> str:
    """A pydantic ValidationError of `model` as one '- path: message' line per problem."""
    lines = []
    for err in exc.errors():
        path = _loc(err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            name = str(err["loc"][-1])
            hint = suggest(name, _known_fields(model, err["loc"]))
            lines.append(f"- {path}: unknown field{hint}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
            lines.append(f"- {path}: {msg}{shown}")
    return "\n".join(lines)


def first_error(exc, model) -> str:
    """The first problem of a ValidationError, without the leading '- '."""
    return format_errors(exc, model).split("\n")[0].lstrip("- ")


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Diverged|Missing|Mismatch|Interrupt)): (.+)")


def error_reason(error: BaseException | str | None) -> Optional[str]:
    """The exception line of a trial error ('TrialDiverged: Loss became nan ...'), at most 400
    characters; None when there is no error."""
    if error is None or error == "":
        return None
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    found = [ln for ln in lines if _EXCEPTION_LINE.match(ln) and not ln.startswith(("ray.exceptions.RayTaskError",
                                                                                     "ray.tune.error"))]
    if found:
        return found[-1][:400]
    return (lines[-1] if lines else type(error).__name__)[:400]
