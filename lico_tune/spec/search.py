"""The sections of a spec around its base trial: search space and algorithm, resources and
experiment trackers. Re-exported by lico_tune.spec."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator

from .limits import MAX_REPEATS, MAX_SAMPLES
from .strict import StrictModel

# ----------------------------------------------------------------------------- search sections

Distribution = dict[Literal["grid", "choice", "uniform", "loguniform", "randint", "quniform"], list[Any]]


class SchedulerConfig(StrictModel):
    name: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1.0)


class SearchConfig(StrictModel):
    space: dict[str, Distribution] = Field(default_factory=dict)
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    num_samples: int = Field(1, ge=1, le=MAX_SAMPLES, description="Samples per cell (at most 100,000: more is a typo, "
                             "not a study; a real sweep runs tens).")
    metrics: dict[str, Literal["max", "min"]] = Field(
        default_factory=lambda: {"val/acc": "max"},
        description="Metrics the searcher, scheduler and 'best configuration' use: val/* only (test/* and the "
        "test-image saliency/* are refused unless allow_test_selection).")
    allow_test_selection: bool = Field(
        False, description="Allow test/* or saliency/* (test images) in metrics: selection on the test set, "
        "optimistic; a warning is printed. For reproducing the released code's protocol only.")
    repeats: int = Field(1, ge=1, le=MAX_REPEATS, description="Run every proposed configuration on this many seeds: "
                         "repeat i has train.seed = (its seed) + i; the searcher is told their repeat_objective "
                         "(at most 1,000: studies use 3 to 30).")
    repeat_objective: Literal["mean", "lcb"] = Field(
        "mean", description="What the searcher is told about a configuration's repeats: their mean, or the "
        "pessimistic end of the 95% t interval (lcb: mean - t*sd/sqrt(n) for max, + for min).")
    allow_inert: list[str] = Field(
        default_factory=list, description="Searched fields that cannot change training in any cell and are searched "
        "on purpose (a control): otherwise such a field is refused (e.g. lico.ot.epsilon with text.features 'eot', "
        "where the transport plan is fixed). See docs/sweeps.md, 'Inert fields'.")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    max_concurrent: Optional[int] = Field(None, ge=1)
    max_failures: int = Field(0, ge=-1)
    num_to_keep: Optional[int] = Field(2, ge=1)
    optuna_storage: Optional[str] = Field(None, description="SQLAlchemy URL (default: SQLite under storage).")

    @field_validator("space")
    @classmethod
    def _one_distribution(cls, space: dict) -> dict:
        for path, dist in space.items():
            if len(dist) != 1:
                raise ValueError(f"'{path}' must have exactly one distribution, e.g. {{grid: [0, 1]}}")
            (kind, args), = dist.items()
            if kind in ("uniform", "loguniform", "randint") and len(args) != 2:
                raise ValueError(f"'{path}': {kind} takes [low, high]")
            if kind == "quniform" and len(args) != 3:
                raise ValueError(f"'{path}': quniform takes [low, high, q]")
            if kind in ("grid", "choice") and not args:
                raise ValueError(f"'{path}': {kind} needs at least one value")
        return space


class ResourcesConfig(StrictModel):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class MLflowConfig(StrictModel):
    tracking_uri: Optional[str] = Field(
        None, description="MLflow tracking URI: a server (http://host:5000) or a local "
                          "database (sqlite:////abs/path/mlflow.db); default: $MLFLOW_TRACKING_URI, else MLflow's own default.")
    experiment: Optional[str] = Field(None, description="MLflow experiment (default: the lico-tune experiment name).")
    artifact_location: Optional[str] = Field(
        None, description="Where a new MLflow experiment keeps its artifacts (default: mlartifacts/ beside a "
                          "sqlite:/// database; else MLflow's default for the tracking URI).")
    artifacts: bool = Field(True, description="Upload each trial's gallery, trial spec, provenance and metrics at its end.")


class WandbConfig(StrictModel):
    project: str = Field(..., min_length=1, description="W&B project.")
    entity: Optional[str] = Field(None, description="W&B entity (team or user; default: yours).")
    mode: Literal["online", "offline", "disabled"] = Field(
        "online", description="'offline' writes runs under dir for a later `wandb sync` (no account needed).")
    dir: Optional[str] = Field(None, description="Where W&B writes its run files (default: the experiment directory "
                                                 "when it is local, else ~/.cache/lico-tune/wandb).")
    artifacts: bool = Field(True, description="Upload each trial's gallery as an artifact at its end.")


class TrackingConfig(StrictModel):
    """Experiment trackers fed by the Tune driver: one tracker run per trial (optional extras)."""
    mlflow: Optional[MLflowConfig] = Field(None, description="Log to MLflow (pip install 'lico-tune[mlflow]').")
    wandb: Optional[WandbConfig] = Field(None, description="Log to Weights & Biases (pip install 'lico-tune[wandb]').")
