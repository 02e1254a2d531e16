"""Checks of a --set PATH=VALUE override's path, before it is applied (no pydantic models here, so
spec.py can import it). Without them pydantic blames the section: `--set lico.zz_nope=1` read
as "lico: unknown field"."""
from __future__ import annotations

from .errors import SpecError, suggest


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
