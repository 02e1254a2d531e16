"""The example specs, installed as the package `lico_tune_specs` (see lico_tune.cli.shipped)."""
