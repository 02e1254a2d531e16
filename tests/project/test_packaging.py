"""The wheel carries the dashboard and the example specs, and `lico-tune dashboard` finds its app
in an installation outside any checkout."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from ray_helpers import REPO

SHIPPED = ["lico_tune", "dashboards", "search_spaces", "pyproject.toml", "setup.py", "README.md"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the source (the build writes build/ and *.egg-info in place)."""
    src = tmp_path_factory.mktemp("src")
    for name in SHIPPED:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(out), str(src)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    (whl,) = out.glob("lico_tune-*.whl")
    return whl


def test_wheel_holds_the_dashboard_app_its_views_and_the_specs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    views = sorted(p.name for p in (REPO / "dashboards" / "views").glob("*.py"))
    specs = sorted(p.name for p in (REPO / "search_spaces").glob("*.yaml"))
    assert {"lico_tune_dashboard/app.py", "lico_tune_dashboard/common.py"} <= names
    assert {f"lico_tune_dashboard/views/{v}" for v in views} <= names and "experiments.py" in views
    assert {f"lico_tune_specs/{s}" for s in specs} <= names and "quickstart.yaml" in specs
    assert "lico_tune/cli/commands.py" in names and "lico_tune/tune/tuner.py" in names


def test_installed_wheel_finds_its_dashboard_and_specs_outside_a_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                          str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import lico_tune, lico_tune.cli.shipped as s; print(lico_tune.__file__); print(s.dashboard_app()); "
            "print(s.specs_dir())")
    # Only the installed copy on the path (not the checkout); the venv's site-packages stay for the deps.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    pkg, app, specs = out.stdout.split()
    assert pkg.startswith(str(site)), "the checkout's lico_tune was imported, not the wheel's"
    assert app == str(site / "lico_tune_dashboard" / "app.py")
    assert specs == str(site / "lico_tune_specs")
    assert (site / "lico_tune_specs" / "quickstart.yaml").is_file()


def test_installed_wheel_runs_a_shipped_spec_by_name(wheel, tmp_path):
    """`lico-tune specs`, `validate quickstart.yaml` and `run quickstart.yaml` from the installed wheel,
    in a folder without search_spaces/ (the run stops at its existing experiment, before Ray)."""
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                          str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "res" / "q").mkdir(parents=True)
    (elsewhere / "res" / "q" / "x.txt").write_text("x")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "lico_tune.cli", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=120)

    out = cli("specs")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"({site / 'lico_tune_specs'})" in out.stdout and "  quickstart.yaml  " in out.stdout
    out = cli("validate", "quickstart.yaml")
    assert out.returncode == 0 and "quickstart.yaml: ok" in out.stdout, out.stderr[-3000:]
    assert f"is the spec shipped with lico-tune, {site / 'lico_tune_specs' / 'quickstart.yaml'}" in out.stderr
    out = cli("run", "quickstart.yaml", "--storage", "res", "--name", "q")
    assert out.returncode == 2 and "res/q already is not empty" in out.stderr, out.stderr[-3000:]
    out = cli("run", "search_spaces/nope.yaml")
    assert out.returncode == 2 and "quickstart.yaml" in out.stderr and "`lico-tune specs`" in out.stderr
