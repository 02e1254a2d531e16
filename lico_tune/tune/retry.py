"""Which trial errors are retried: not those a retry cannot fix.

Tune retries every failed trial `FailureConfig(max_failures)` times; it has no per-error policy.
A missing dataset or weight file, a damaged text encoder or a bad trial config fails the same way
every time, so retrying it only repeats the error (on a paper spec offline: every trial 3 more
times). `install()` makes such an error final: when Tune records a trial's error
(`Trial.handle_error`, called before `Trial.should_recover` decides), a non-retryable one sets
that trial's max_failures to 0, so Tune marks it ERROR at once. Everything else (a reclaimed spot
node, a NaN that a checkpoint may avoid, an out-of-memory kill) is retried as before.

    install()                        # once per driver, before Tuner.fit (run and resume do it)
    reason(exc) -> 'DatasetMissing: ...', retryable(exc) -> bool
"""
from __future__ import annotations

from typing import Optional

from ..errors import error_reason

NON_RETRYABLE = frozenset({"DatasetMissing", "TextEncoderMissing", "TextEncoderCorrupt", "TrialConfigError",
                           "SpecError", "ResumeMismatch"})
_installed = False


def cause(exc: BaseException) -> BaseException:
    """The trial's own exception inside Ray's wrapper (RayTaskError keeps it as .cause)."""
    inner = getattr(exc, "cause", None)
    return inner if isinstance(inner, BaseException) else exc


def retryable(exc: Optional[BaseException]) -> bool:
    if exc is None:
        return True
    names = {k.__name__ for k in type(cause(exc)).__mro__}
    if names & NON_RETRYABLE:
        return False
    return retryable_text(str(exc))       # an exception Ray could not unpickle arrives as text only


def retryable_text(text: str) -> bool:
    """Whether an error, as its text, is not one of NON_RETRYABLE ('DatasetMissing: ...')."""
    return not any(f"{n}:" in text or f"({n})" in text for n in NON_RETRYABLE)


def reason(exc: Optional[BaseException]) -> Optional[str]:
    if exc is None:
        return None
    c = cause(exc)
    return error_reason(f"{type(c).__name__}: {c}") if c is not exc else error_reason(str(exc))


def install() -> None:
    """Make Tune's trials give up at once on a non-retryable error (idempotent)."""
    global _installed
    if _installed:
        return
    from ray.tune.experiment.trial import Trial

    original = Trial.handle_error

    def handle_error(self, exc=None):
        original(self, exc)
        if not retryable(exc):
            self.max_failures = 0              # should_recover() is now False: ERROR, no retry

    Trial.handle_error = handle_error
    _installed = True
