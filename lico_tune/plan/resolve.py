"""One trial's config: the spec's base, then the searched values, then its arm, then the clamps.

Lives beside the spec (no Ray): the planner checks every cell with it, the Tune trainable resolves
each trial with it, and the summary recovers a trial's dataset with it.
"""
from __future__ import annotations

import copy

from ..keys import SEED_PATH, TRIAL_INDEX, repeat_seed
from ..spec import TrialConfig, field_paths, get_path, set_path


def resolve_trial(runtime: dict, params: dict) -> TrialConfig:
    """A trial's config from a plan's `runtime()` ({base, arms, limits, force}) and the trial's
    params ({'arm': name?, 'lico.ot.epsilon': 0.05, ...}): base, then the sampled/grid values,
    then its arm (an arm's override wins over a searched value), then the repeat's seed offset
    (`__trial_index__`, see `lico_tune.keys.repeat_seed`), then the smoke-test min-clamps
    (`limits`), then the forced values (`force`). Raises pydantic's ValidationError."""
    tree = copy.deepcopy(runtime["base"])
    paths = set(field_paths())
    for path, value in params.items():
        if path in paths:
            set_path(tree, path, value)
    arm = params.get("arm")
    for path, value in (runtime["arms"].get(arm, {}) if arm is not None else {}).items():
        set_path(tree, path, value)
    if TRIAL_INDEX in params:      # repeat i of a configuration (search.repeats)
        set_path(tree, SEED_PATH, repeat_seed(get_path(tree, SEED_PATH), params[TRIAL_INDEX]))
    for path, cap in runtime.get("limits", {}).items():
        now = get_path(tree, path)
        set_path(tree, path, cap if now is None else min(now, cap))
    for path, value in runtime.get("force", {}).items():
        set_path(tree, path, value)
    return TrialConfig.model_validate(tree)
