"""Old module names, so that what older lico-tune versions pickled still loads.

Ray pickles the Tuner (tuner.pkl) and the searcher's state by reference to the classes and
functions it was given; an experiment started before a module moved names it under its old path
(lico_tune.spec_trial, lico_tune.search, ...). `install()` (run on `import lico_tune`) adds an
import hook for exactly these names: a renamed module is the new module itself; a module whose
names went to several homes is a stand-in that fetches each name from its new home on first use.
Nothing else resolves through here, and the package's own code never imports an old name
(tests/project/test_architecture.py). The targets are written as strings, imported only when an old
pickle names them: the Ray side's (lico_tune.tune.*) then loads only where Ray unpickles anyway.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

# An old module moved whole (the package layout of 2026-12-04).
RENAMED = {
    "lico_tune.spec_trial": "lico_tune.spec.trial",
    "lico_tune.safe_files": "lico_tune.storage.safe_files",
    "lico_tune.userpaths": "lico_tune.storage.userpaths",
    "lico_tune.lock": "lico_tune.trust.lock",
    "lico_tune.keyfile": "lico_tune.trust.keyfile",
    "lico_tune.integrity": "lico_tune.train.integrity",
    "lico_tune.spec_search": "lico_tune.spec.search",
    "lico_tune.spec_checks": "lico_tune.spec.checks",
    "lico_tune.overrides": "lico_tune.spec.overrides",
    "lico_tune.safe_yaml": "lico_tune.spec.safe_yaml",
    "lico_tune.trial_config": "lico_tune.plan.resolve",
    "lico_tune.preflight": "lico_tune.plan.preflight",
    "lico_tune.fetchable": "lico_tune.plan.fetchable",
    "lico_tune.health": "lico_tune.train.health",
    "lico_tune.health_rules": "lico_tune.train.health_rules",
    "lico_tune.checkpoint": "lico_tune.train.checkpoint",
    "lico_tune.rerun": "lico_tune.train.rerun",
    "lico_tune.explain": "lico_tune.train.explain",
    "lico_tune.cli_results": "lico_tune.cli.results",
    "lico_tune.cli_help": "lico_tune.cli.help",
    "lico_tune.cli_common": "lico_tune.cli.output",
    "lico_tune.signals": "lico_tune.cli.dashboard",
    "lico_tune.shipped": "lico_tune.cli.shipped",
    "lico_tune.precision": "lico_tune.compute",
}
_KEYS, _COMPUTE = "lico_tune.keys", "lico_tune.compute"
# An old module whose names now live in several modules: name -> "new.module:new_name".
SPLIT = {
    "lico_tune.selection": {
        **{n: f"{_KEYS}:{n}" for n in ("TRIAL_INDEX", "SEED_PATH", "SEED_COLUMNS", "is_seed", "config_id",
                                       "repeat_seed")},
        **{n: f"lico_tune.plan.selection:{n}" for n in ("TEST_PREFIXES", "is_test_metric", "check_selection",
                                                        "check_repeats")}},
    "lico_tune.chance": {
        **{n: f"{_KEYS}:{n}" for n in ("CHANCE_ALPHA", "TOP_PRED_SHARE", "CHANCE_P", "AT_CHANCE_FLAG",
                                       "COLLAPSED_FLAG", "CHANCE_KEYS")},
        "KINDS": f"{_KEYS}:CHANCE_KINDS",
        **{n: f"lico_tune.train.chance:{n}" for n in ("COLLAPSE_SHARE", "ChanceCheck", "chance_check",
                                                      "check_predictions")}},
    "lico_tune.device": {"pick_device": f"{_COMPUTE}:pick_device",
                         "TrialConfigError": "lico_tune.errors:TrialConfigError"},
    "lico_tune.determinism": {"CUBLAS_WORKSPACE": f"{_COMPUTE}:CUBLAS_WORKSPACE",
                              "resolve": f"{_COMPUTE}:resolve_determinism",
                              "configure": f"{_COMPUTE}:configure_determinism",
                              "state": f"{_COMPUTE}:determinism_state"},
    # before the Ray side moved into lico_tune.tune
    "lico_tune.search": {"trial_dirname": "lico_tune.tune.tuner:trial_dirname",
                         "_OptunaCells": "lico_tune.tune.searchers:OptunaCells",
                         "make_trainable": "lico_tune.tune.trainable:make_trainable"},
    "lico_tune.tune_support": {"LicoOptunaSearch": "lico_tune.tune.searchers:LicoOptunaSearch",
                               "KeepResultsOnRetry": "lico_tune.tune.callbacks:KeepResultsOnRetry"},
    "lico_tune.results.callback": {"CatalogCallback": "lico_tune.tune.callbacks:CatalogCallback"},
    "lico_tune.trainable": {"run_trial": "lico_tune.tune.trainable:run_trial"},
}


def resolve(where: str):
    """'module:name' -> the object."""
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


def _stand_in(old: str) -> types.ModuleType:
    names = SPLIT[old]
    module = types.ModuleType(old, f"moved: its names now live in {sorted({v.split(':')[0] for v in names.values()})}")

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {old!r} (moved, see lico_tune/legacy.py) has no attribute {name!r}")
        value = resolve(names[name])
        setattr(module, name, value)
        return value
    module.__getattr__ = __getattr__
    module.__all__ = sorted(names)
    return module


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in RENAMED or fullname in SPLIT:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        if spec.name in RENAMED:
            return importlib.import_module(RENAMED[spec.name])
        return _stand_in(spec.name)

    def exec_module(self, module):
        pass


_HOOK = _OldNames()


def install() -> None:
    """Add the import hook (once)."""
    if _HOOK not in sys.meta_path:
        sys.meta_path.append(_HOOK)
