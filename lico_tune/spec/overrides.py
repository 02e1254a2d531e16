"""Field paths of a trial config ('lico.ot.epsilon') and `--set PATH=VALUE` overrides: parsing,
the path checks (without them pydantic blames the section: `--set lico.zz_nope=1` read as "lico:
unknown field"), and applying them so that no search axis silently undoes an override."""
from __future__ import annotations

import copy
from typing import Any, Optional

import yaml
from pydantic import BaseModel

from ..errors import SpecError, suggest
from .safe_yaml import load_text as _load_yaml_text
from .trial import TrialConfig


def check_override_path(text: str, path: str, trial_paths: list[str], sections: list[str], prefix: str = "") -> None:
    """A --set path into a trial section must name a field: 'lico.zz_nope', 'train.epochs.x' and
    'eval.cams.0' are refused naming themselves (not the section that pydantic would blame)."""
    rel = path.removeprefix(prefix) if prefix else path
    parts = rel.split(".")
    if not all(parts):
        raise SpecError(f"--set '{text}': '{path}' has an empty part; write a dotted field path such as "
                        f"lico.ot.epsilon.")
    if parts[0] not in sections or rel in trial_paths:
        return
    if any(p.startswith(rel + ".") for p in trial_paths):     # a whole section: --set 'data={name: digits}'
        return
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in trial_paths:
            raise SpecError(f"--set '{text}': '{head}' is a single value (a number, a name or a list), it has "
                            f"no part '{'.'.join(parts[i:])}'. Set it whole, e.g. --set '{head}=VALUE' "
                            f"(a list as [a, b]).")
    parent = ".".join(parts[:-1])
    siblings = [p[len(parent) + 1:] for p in trial_paths if p.startswith(parent + ".") and
                "." not in p[len(parent) + 1:]]
    hint = suggest(parts[-1], siblings) if siblings else suggest(rel, trial_paths)
    raise SpecError(f"--set '{text}': '{path}' is not a field{hint} "
                    f"(`lico-tune schema` lists every field).")


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


# ----------------------------------------------------------------------------- --set overrides


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
