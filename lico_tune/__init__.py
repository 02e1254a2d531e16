"""lico-tune: hyperparameter search and ablations for LICO explainable image classifiers."""
from . import legacy

__version__ = "0.1.0"
legacy.install()    # what older versions pickled names modules that have moved since
