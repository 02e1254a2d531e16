"""Resume experiments started before the Ray side moved into `lico_tune.tune`.

Ray pickles the Tuner (tuner.pkl) and the searcher's state by reference to the classes and
functions it was given; an experiment started by lico-tune before this package existed names
them under their old modules. `install()` maps those old names onto the current objects, so
`Tuner.restore` can unpickle them. Only `resume` calls it, right before restoring.
"""
from __future__ import annotations

import sys
import types


def _moved() -> dict[str, dict[str, object]]:
    from . import callbacks, searchers, trainable, tuner
    return {
        "lico_tune.search": {"trial_dirname": tuner.trial_dirname, "_OptunaCells": searchers.OptunaCells,
                             "make_trainable": trainable.make_trainable},
        "lico_tune.tune_support": {"LicoOptunaSearch": searchers.LicoOptunaSearch,
                                   "KeepResultsOnRetry": callbacks.KeepResultsOnRetry},
        "lico_tune.results.callback": {"CatalogCallback": callbacks.CatalogCallback},
        "lico_tune.trainable": {"run_trial": trainable.run_trial},
    }


def install() -> None:
    """Register the old module names (only those no real module holds)."""
    for name, attrs in _moved().items():
        if name in sys.modules:
            continue
        module = types.ModuleType(name, f"moved: see {__name__}")
        module.__dict__.update(attrs)
        sys.modules[name] = module
