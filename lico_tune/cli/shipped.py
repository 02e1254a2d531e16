"""The files that ship with lico-tune besides the package: the dashboard app and the example
specs. Installed from a wheel they are the packages `lico_tune_dashboard` and `lico_tune_specs`
(see setup.py); in a checkout they are dashboards/ and search_spaces/ next to lico_tune/."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

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
