"""Pydantic models of a lico-tune spec, YAML loading with field-path errors, and --set overrides.

A *trial* configuration (`TrialConfig`) is everything one training run needs. A *spec* (`Spec`)
wraps a base trial with the search space, ablation arms, resources and storage.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from .errors import SpecError, first_error, format_errors, suggest
from .layout import DEFAULT_STORAGE
from .overrides import check_override_path
from .safe_yaml import load_text as _load_yaml_text, read_file as _read_yaml_file
# The sections live in spec_trial and spec_search; lico_tune.spec stays the one import path.
from .spec_search import (Distribution, MLflowConfig, ResourcesConfig, SchedulerConfig,  # noqa: F401
                          SearchConfig, TrackingConfig, WandbConfig)
from .spec_trial import (DatasetName, DataConfig, EvalConfig, LicoConfig, MMConfig, ModelConfig, OTConfig,  # noqa: F401
                         PlacedConfig, ShortcutConfig, StrictModel, TextConfig, TrainConfig, TrialConfig)


class Spec(StrictModel):
    name: str = Field("lico", pattern=r"^[A-Za-z0-9_.-]+$")
    base: TrialConfig = Field(default_factory=TrialConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    ablation: Optional[dict[str, dict[str, Any]]] = None
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    storage: str = DEFAULT_STORAGE

    @field_validator("name")
    @classmethod
    def _not_dots(cls, v: str) -> str:
        if set(v) == {"."}:
            raise ValueError(f"'{v}' would name the parent or the current directory; use letters or digits")
        return v

    @model_validator(mode="after")
    def _paths_name_fields(self) -> "Spec":
        for path in self.search.space:
            check_field_path(path, where="search.space")
        for arm, overrides in (self.ablation or {}).items():
            trial = self.base.model_dump()
            for path, value in overrides.items():
                check_field_path(path, where=f"ablation.{arm}")
                set_path(trial, path, value)
            try:
                TrialConfig.model_validate(trial)
            except ValidationError as exc:
                raise ValueError(f"ablation arm '{arm}': {first_error(exc, TrialConfig)}") from None
        return self


# ----------------------------------------------------------------------------- field paths


def field_paths(model: type[BaseModel] = TrialConfig, prefix: str = "") -> list[str]:
    """Every leaf field path of a model, e.g. 'lico.ot.epsilon'."""
    out = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += field_paths(ann, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def check_field_path(path: str, where: str) -> None:
    paths = field_paths()
    if path not in paths:
        raise ValueError(f"{where}: '{path}' is not a field{suggest(path, paths)}")


def set_path(tree: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SpecError(f"'{path}': '{key}' is not a section")
    node[keys[-1]] = value


def get_path(tree: dict, path: str) -> Any:
    node = tree
    for key in path.split("."):
        node = node[key]
    return node


# ----------------------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[str, Any]:
    """'lico.ot.epsilon=0.05' -> ('lico.ot.epsilon', 0.05); the value is parsed as YAML."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:       # undecodable bytes on the command line arrive as surrogates
        shown = text.encode("utf-8", "backslashreplace").decode()
        raise SpecError(f"--set '{shown}': not UTF-8 text; write the value in UTF-8.") from None
    if "=" not in text:
        raise SpecError(f"--set '{text}': expected PATH=VALUE, e.g. --set lico.ot.epsilon=0.05")
    path, raw = text.split("=", 1)
    return path.strip(), _load_yaml_text(raw, source=f"--set '{text}'") if raw.strip() else None


def apply_overrides(tree: dict, overrides: list[str], prefix: str = "",
                    notices: Optional[list[str]] = None) -> dict:
    """Apply --set overrides. Paths are relative to the spec root; for a spec, a path that names a
    trial field (e.g. 'train.epochs') is taken relative to 'base'.

    An override of a base field is never silently undone by the rest of the spec: a search.space
    axis on that field (or under it) is removed, so every trial uses the override; an ablation arm
    that sets the field still wins over it (arms win over the base). Both are said in `notices`."""
    tree = copy.deepcopy(tree)
    trial_paths = field_paths()
    for text in overrides:
        path, value = parse_override(text)
        check_override_path(text, path, trial_paths, list(TrialConfig.model_fields), prefix)
        if prefix and (path in trial_paths or path.split(".")[0] in TrialConfig.model_fields):
            path = f"{prefix}{path}"
        set_path(tree, path, value)
        if path.startswith("base."):
            said = _settle_override(tree, text.strip(), path[len("base."):])
            if notices is not None:
                notices.extend(said)
    return tree


def _under(key: Any, path: str) -> bool:
    return isinstance(key, str) and (key == path or key.startswith(path + "."))


def _settle_override(tree: dict, shown: str, path: str) -> list[str]:
    """Remove the search.space axes an override of base field `path` replaces; name the arms that
    still win over it. Returns the notices."""
    said = []
    search = tree.get("search")
    space = search.get("space") if isinstance(search, dict) else None
    if isinstance(space, dict):
        for key in [k for k in space if _under(k, path)]:
            dist = space.pop(key)
            what = (" ".join(f"{kind} {_flow(args)}" for kind, args in dist.items())
                    if isinstance(dist, dict) else _flow(dist))
            said.append(f"--set {shown} replaces the {what} of search.space.{key}: every trial uses the "
                        f"override (the axis is removed)")
    arms = tree.get("ablation")
    for arm, sets in (arms.items() if isinstance(arms, dict) else ()):
        for key, value in (sets.items() if isinstance(sets, dict) else ()):
            if _under(key, path):
                said.append(f"--set {shown} is overridden by arm {arm}'s {key}={_flow(value)} in a sweep "
                            f"(arms win over the base)")
    return said


def _flow(value: Any) -> str:
    """A value as it reads in YAML flow style: [16384], 0, fashion_mnist."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file. Pass the path of a YAML spec, "
                        f"e.g. search_spaces/quickstart.yaml.")
    data = _read_yaml_file(path)
    if data is None or data == {}:
        raise SpecError(f"{path}: the spec is empty (no keys, or only comments). Write at least its name "
                        f"and base, e.g. copy search_spaces/quickstart.yaml.")
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping with keys such as name, base, search; "
                        f"write it as one (copy search_spaces/quickstart.yaml to start).")
    return data


def load_spec(path: str | Path, overrides: list[str] = (), notices: Optional[list[str]] = None) -> Spec:
    """Load and validate a spec file. Raises SpecError with every problem's field path.
    `notices` (a list) receives what the overrides replaced or cannot change (apply_overrides)."""
    tree = apply_overrides(read_yaml(path), list(overrides), prefix="base.", notices=notices)
    return validate_spec(tree, source=str(path))


def validate_spec(tree: dict, source: str = "spec") -> Spec:
    try:
        return Spec.model_validate(tree)
    except ValidationError as exc:
        raise SpecError(f"{source} is not a valid spec:\n{format_errors(exc, Spec)}\n"
                        f"Fix the fields named above (`lico-tune schema` lists every field).") from None


# Fields added since a trial config could first be saved, with the value that reproduces what the
# older lico-tune did. A saved config (a checkpoint's, a trial_spec.yaml, a run file's base) holds
# every field of the version that wrote it, so a missing one means an older writer.
LEGACY_FIELDS = {"text.pooled": "mean"}   # before fidelity v2 (2026-12-04) MM read the mean of a class's points


def saved_trial(tree: dict) -> dict:
    """A trial config saved by any lico-tune version, as the current fields read it (LEGACY_FIELDS)."""
    tree = copy.deepcopy(tree)
    for path, old in LEGACY_FIELDS.items():
        section, name = path.split(".")
        if isinstance(tree.get(section), dict) and name not in tree[section]:
            tree[section][name] = old
    return tree


def validate_trial(tree: dict, source: str = "trial config") -> TrialConfig:
    try:
        return TrialConfig.model_validate(tree)
    except ValidationError as exc:
        raise SpecError(f"{source} is not valid:\n{format_errors(exc, TrialConfig)}") from None


def json_schema() -> dict:
    schema = Spec.model_json_schema()
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["title"] = "lico-tune spec"
    return schema


def dump_yaml(model: BaseModel) -> str:
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)


__all__ = [
    "DataConfig", "PlacedConfig", "ShortcutConfig", "ModelConfig", "TextConfig", "OTConfig", "MMConfig", "LicoConfig", "TrainConfig",
    "EvalConfig", "TrialConfig", "SearchConfig", "SchedulerConfig", "ResourcesConfig", "TrackingConfig",
    "MLflowConfig", "WandbConfig", "Distribution", "StrictModel", "Spec",
    "SpecError", "load_spec", "validate_spec", "validate_trial", "apply_overrides", "set_path",
    "get_path", "field_paths", "json_schema", "dump_yaml", "Union",
]
