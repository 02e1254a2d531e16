"""Packaging beyond pyproject.toml: the wheel also carries the dashboard (dashboards/ installed as
the package `lico_tune_dashboard`) and the example specs (search_spaces/ as `lico_tune_specs`),
so `lico-tune dashboard` works from an installed wheel. Everything else is in pyproject.toml;
`lico_tune.cli.shipped` finds these files in an installation or a checkout."""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["lico_tune", "lico_tune.*"]),
              "lico_tune_dashboard", "lico_tune_dashboard.views", "lico_tune_specs"],
    package_dir={"lico_tune_dashboard": "dashboards", "lico_tune_specs": "search_spaces"},
    package_data={"lico_tune_specs": ["*.yaml"]},
)
