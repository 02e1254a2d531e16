"""lico-tune: hyperparameter search and ablations for LICO explainable image classifiers."""
__version__ = "0.1.0"
