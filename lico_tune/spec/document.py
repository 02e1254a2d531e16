"""The spec document: a base trial (`TrialConfig`, everything one training run needs, in trial.py)
with the search space, ablation arms, resources, tracking and storage; loading a file with
field-path errors; trial configs saved by any lico-tune version; the JSON schema.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ..errors import SpecError, first_error, format_errors
from ..layout import DEFAULT_STORAGE
from .overrides import apply_overrides, check_field_path, set_path
from .safe_yaml import read_file as _read_yaml_file
from .limits import MAX_NAME_BYTES, name_problem
from .search import ResourcesConfig, SearchConfig, TrackingConfig
from .strict import StrictModel
from .trial import TrialConfig


class Spec(StrictModel):
    name: str = Field("lico", max_length=MAX_NAME_BYTES,
                      description="Experiment name: its directory is the name plus a date suffix (at most 200 "
                      "characters: letters, digits and _ . + -).")
    base: TrialConfig = Field(default_factory=TrialConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    ablation: Optional[dict[str, dict[str, Any]]] = None
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    storage: str = Field(DEFAULT_STORAGE, description="The results root: a local directory, s3:// or gs:// URL.")

    @field_validator("name", mode="before")       # before max_length: its own message says why
    @classmethod
    def _a_directory_name(cls, v: Any) -> Any:
        if isinstance(v, str) and (problem := name_problem(v)) is not None:
            raise ValueError(problem)
        return v

    @field_validator("storage")
    @classmethod
    def _storage_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(f"empty; write the results root (a directory such as {DEFAULT_STORAGE}, or an "
                             f"s3:// or gs:// URL), or leave the field out for that default")
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


# ----------------------------------------------------------------------------- loading


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
