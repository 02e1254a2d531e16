"""The spec language: a lico-tune YAML document validated by pydantic.

    document.py   the Spec (base trial + search + ablation + resources + tracking + storage), loading
                  a file with field-path errors, saved trial configs, the JSON schema
    trial.py      TrialConfig: everything one training run needs (data, model, text, lico, train, eval);
                  its LICO sections in lico.py, evaluation in evaluation.py, their base StrictModel in strict.py
    search.py     the search, resources and tracking sections
    overrides.py  field paths and `--set path=value` overrides
    checks.py     the checks a plan runs on its cells (distributions, names, storage URLs)
    limits.py     count bounds, the seed range, names, no booleans read as numbers
    safe_yaml.py  YAML reading with size and alias limits

`lico_tune.spec` is the one import path for the rest of the package.
"""
from .document import (LEGACY_FIELDS, Spec, dump_yaml, json_schema, load_spec, read_yaml, saved_trial,
                       validate_spec, validate_trial)
from .overrides import apply_overrides, check_field_path, field_paths, get_path, parse_override, set_path
from .search import (Distribution, MLflowConfig, ResourcesConfig, SchedulerConfig, SearchConfig, TrackingConfig,
                     WandbConfig)
from .trial import (DataConfig, DatasetName, EvalConfig, LicoConfig, MMConfig, ModelConfig, OTConfig, PlacedConfig,
                    ShortcutConfig, StaticTextConfig, StrictModel, TextConfig, TrainConfig, TrialConfig)
from ..errors import SpecError

__all__ = ["LEGACY_FIELDS", "DataConfig", "DatasetName", "Distribution", "EvalConfig", "LicoConfig", "MLflowConfig",
           "MMConfig", "ModelConfig", "OTConfig", "PlacedConfig", "ResourcesConfig", "SchedulerConfig", "SearchConfig",
           "ShortcutConfig", "Spec", "StaticTextConfig", "SpecError", "StrictModel", "TextConfig", "TrackingConfig", "TrainConfig",
           "TrialConfig", "WandbConfig", "apply_overrides", "check_field_path", "dump_yaml", "field_paths", "get_path",
           "json_schema", "load_spec", "parse_override", "read_yaml", "saved_trial", "set_path", "validate_spec",
           "validate_trial"]
