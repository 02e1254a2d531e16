"""The files that ship with lico-tune besides the package: the dashboard app and the example
specs. Installed from a wheel they are the packages `lico_tune_dashboard` and `lico_tune_specs`
(see setup.py); in a checkout they are dashboards/ and search_spaces/ next to lico_tune/."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

from ..errors import SpecError

CHECKOUT = Path(__file__).resolve().parents[2]


def _package_dir(package: str, checkout_dir: str, marker: str) -> Optional[Path]:
    """The checkout's own folder when this lico_tune was imported from a checkout (so a checkout's
    dashboard is not replaced by another copy installed in the same environment), else the
    installed package."""
    local = CHECKOUT / checkout_dir
    if any(local.glob(marker)):
        return local
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return None


def dashboard_app() -> Optional[Path]:
    """The Streamlit entry script (app.py), or None when neither an installation nor a checkout has it."""
    where = _package_dir("lico_tune_dashboard", "dashboards", "app.py")
    return where / "app.py" if where is not None and (where / "app.py").is_file() else None


def specs_dir() -> Optional[Path]:
    """The directory of the example specs (quickstart.yaml, ablation.yaml, ...)."""
    where = _package_dir("lico_tune_specs", "search_spaces", "*.yaml")
    return where if where is not None and any(where.glob("*.yaml")) else None


def shipped_specs() -> dict[str, Path]:
    """{file name: path} of the example specs, sorted by name (empty when none are installed)."""
    where = specs_dir()
    return {p.name: p for p in sorted(where.glob("*.yaml"))} if where is not None else {}


def describe(path: Path, width: int = 80) -> str:
    """A spec's one-line description: the first sentence of its header comment, cut at `width`."""
    words = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("#") or not line.strip("# "):
            break
        words += line.lstrip("#").split()
    text = ""
    for w in words:
        text += (" " if text else "") + w
        if w.endswith((".", "?", "!")) and not w.endswith(("e.g.", "i.e.")):
            break
    return text if len(text) <= width else text[:width - 3].rsplit(" ", 1)[0] + "..."


def find_spec(arg: str) -> tuple[str, bool]:
    """(the path to load, whether it is a shipped spec) for a SPEC argument: a file that exists, else
    a shipped spec named by its file name with or without .yaml (`quickstart.yaml`, `quickstart`) or
    by its path in a checkout (`search_spaces/quickstart.yaml`, what the docs show, which an
    installed wheel does not have). SpecError names what can be passed."""
    if Path(arg).is_file():
        return arg, False
    specs = shipped_specs()
    p = Path(arg)
    name = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    if (len(p.parts) == 1 or p.parent.as_posix() == "search_spaces") and name in specs:
        return str(specs[name]), True
    names = ", ".join(specs) or "none (this installation has no lico_tune_specs)"
    raise SpecError(f"{arg}: no such spec file. Pass the path of a YAML spec file, or the name of a spec shipped "
                    f"with lico-tune: {names} (`lico-tune specs` says what each one does; copy one to start "
                    f"your own).")
