"""Run a planned experiment, or resume an interrupted one, on a local Ray or a cluster."""
from __future__ import annotations

import hashlib
import logging
import os
import sys
from typing import Optional

import ray
from ray import tune

from ..errors import SpecError
from ..layout import OPTUNA_FILE
from ..trust.lock import experiment_lock
from ..plan import Plan
from ..plan.capacity import check_cluster_resources
from ..plan.preflight import check_new_experiment, check_resources
from ..plan.targets import check_trackers
from ..results.tune_state import latest_state_name, read_state
from ..storage import Storage, join, write_text
from ..trust import sign_experiment, verified_bytes
from .cluster import read_capacity
from .driver import driving, remove_scratch
from .interrupt import graceful_stop
from .progress import quiet_trial_tracebacks
from .restore import check_restorable, no_fresh_start, no_pending_trial_warnings
from .retry import install as no_retry_of_permanent_errors
from .signed_fs import signed_filesystem
from .summary import Summary, summarize
from .tuner import build_tuner, quiet_ray_env, trainable_with_resources

log = logging.getLogger(__name__)


def init_ray(address: Optional[str]) -> bool:
    """Connect to a cluster (`auto`, HOST:PORT, or RAY_ADDRESS) or start a local Ray.
    Returns True when this process started Ray (and so should shut it down)."""
    if ray.is_initialized():
        return False
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address or os.environ.get("RAY_ADDRESS"):
        try:
            ray.init(address=address or None, **kwargs)
        except ConnectionError as exc:
            where = address or f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}"
            raise SpecError(f"could not connect to a Ray cluster at {where} ({str(exc).splitlines()[0]}). "
                            f"Start one (`ray up ray_cluster.yaml`, or `ray start --head` here), check "
                            f"HOST:PORT, or leave out --address to run on this machine alone.") from None
    else:
        _quiet_token_auth_notice()
        ray.init(include_dashboard=False, **kwargs)
    return True


def _quiet_token_auth_notice() -> None:
    """Drop Ray's notice that token authentication is on for the local Ray this process starts.

    Ray >= 2.59 turns it on by itself for a new local cluster (RAY_AUTH_MODE unset: a token in
    ~/.ray/auth_token, made if missing) and says so on every run, which drowns lico-tune's own
    output. Only that notice goes; the protection stays. Not RAY_AUTH_MODE=disabled: the local GCS
    and raylet listen on all interfaces, not on loopback alone, so anyone on the network could run
    code here. Not RAY_AUTH_MODE=token either: Ray reads it once, at import, and the GCS then fails
    to find a token it never made."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_not_auth_notice)


def _not_auth_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def run(plan: Plan, address: Optional[str] = None, out=sys.stdout, verbose: bool = False,
        status_every_s: float = 30.0) -> Summary:
    """Run a planned experiment to the end and return its summary (progress: see `build_tuner`).
    A new experiment only (an existing one: OutputExists), by one driver (its lock: ExperimentBusy)."""
    check_trackers(plan.spec.tracking)          # before Ray starts: each tracker answers within a bound
    with experiment_lock(plan.experiment_path, say=lambda m: print(m, file=out, flush=True)):
        check_new_experiment(plan)              # again under the lock: two `run --name X` started at once
        return _run(plan, address, out, verbose, status_every_s)


def _run(plan: Plan, address: Optional[str], out, verbose: bool, status_every_s: float) -> Summary:
    started = init_ray(address)
    try:
        say = lambda m: print(m, file=out, flush=True)  # noqa: E731
        if address or os.environ.get("RAY_ADDRESS"):     # the nodes alive and what the autoscaler may start
            check_cluster_resources(plan, read_capacity(), say=say)
        else:
            check_resources(plan, ray.cluster_resources(), where="the Ray cluster", say=say)
        write_text(plan.run_file, plan.to_yaml())
        print(f"experiment {plan.experiment}: {plan.n_trials} trials "
              f"({len(plan.cells)} cells x {plan.spec.search.num_samples} samples"
              f"{f' x {plan.spec.search.repeats} seeds' if plan.spec.search.repeats > 1 else ''}), "
              f"algorithm {plan.spec.search.algorithm}, scheduler {plan.spec.search.scheduler.name}, "
              f"results in {plan.experiment_path}" +
              (f", Optuna study in {plan.optuna_url}" if plan.optuna_url else ""), file=out, flush=True)
        # Ray writes its state (tuner.pkl first) through a filesystem that signs it (signed_fs.py)
        fs, fs_path, signer = signed_filesystem(plan.experiment_path, {}, sign_experiment(plan.experiment_path))
        tuner = build_tuner(plan, verbose, status_every_s, storage=(fs, fs_path.rpartition("/")[0]))
        results, stopped_by = _fit(tuner, plan.experiment_path, signer)
        return summarize(results, plan, out=out, interrupted=stopped_by)
    finally:
        if started:
            ray.shutdown()
        _remove_scratch(plan.experiment_path)


def _fit(tuner: tune.Tuner, experiment_path: str, signer):
    """tuner.fit() under the driver record (lico_driver.json: who runs the experiment, and how it
    ended) and the graceful SIGINT/SIGTERM stop; returns (ResultGrid, the signal that stopped it).
    signer: the signed_fs handler Ray writes through; its manifest is sealed when the driver ends."""
    no_retry_of_permanent_errors()
    with driving(experiment_path) as outcome, graceful_stop() as stop:
        try:
            results = tuner.fit()
            outcome.set("finished")
        finally:
            if stop.received:            # a second signal raises KeyboardInterrupt out of fit()
                outcome.set(stop.received)
            _seal(signer)
    return results, stop.received


def _seal(signer) -> None:
    """The manifest of what Ray left, never raising: the sweep's outcome stands (the manifest in
    storage already accepts every file Ray wrote; sealing drops the digests they replaced)."""
    try:
        signer.seal()
    except Exception as exc:
        log.warning("lico-tune could not seal the signed manifest of %s: %s", signer.uri, exc)


def _remove_scratch(experiment_path: str) -> None:
    """The scratch folders of this experiment's trials that a stopped trial left behind."""
    try:
        storage = Storage(experiment_path)
        state = read_state(storage, experiment_path, latest_state_name(e.name for e in storage.list(experiment_path)))
        remove_scratch(state)
    except OSError:
        pass


def load_plan(experiment_dir: str) -> Plan:
    """The plan of an experiment directory, wherever it lies now (it may have been moved)."""
    return Plan.load(experiment_dir)


def resume(experiment_dir: str, address: Optional[str] = None, out=sys.stdout) -> Summary:
    """Finish an interrupted experiment: finished trials stay, unfinished and errored ones continue
    from their last checkpoints. One driver at a time (ExperimentBusy); a state Ray cannot restore
    is refused (restore.StateNotRestorable), never run afresh."""
    plan = load_plan(experiment_dir)
    check_trackers(plan.spec.tracking)          # before Ray starts, as for `run`
    with experiment_lock(plan.experiment_path, say=lambda m: print(m, file=out, flush=True)):
        return _resume(plan, address, out)


def _resume(plan: Plan, address: Optional[str], out) -> Summary:
    experiment_dir = plan.experiment_path
    verified = verified_bytes(experiment_dir)          # signed by this user: before Ray unpickles anything
    check_restorable(experiment_dir)                    # before Ray starts: a damaged state file
    bring_back_study(plan)
    # Ray reads tuner.pkl and every state it unpickles from these verified bytes, not the directory
    # again, and signs what it writes (signed_fs.py)
    fs, fs_path, signer = signed_filesystem(
        experiment_dir, verified, {name: hashlib.sha256(data).hexdigest() for name, data in verified.items()})
    quiet_ray_env()
    started = init_ray(address)
    try:
        if not tune.Tuner.can_restore(fs_path, storage_filesystem=fs):
            raise SpecError(f"{experiment_dir}: Ray Tune finds no experiment state to restore there "
                            f"(the run was stopped before its first snapshot); start it again with `lico-tune run`.")
        print(f"resuming {plan.experiment} from {experiment_dir}", file=out, flush=True)
        quiet_trial_tracebacks()
        with no_pending_trial_warnings():
            tuner = tune.Tuner.restore(fs_path, trainable=trainable_with_resources(plan), resume_errored=True,
                                       storage_filesystem=fs)
        with no_fresh_start(experiment_dir):            # whatever else Ray fails to restore
            results, stopped_by = _fit(tuner, experiment_dir, signer)
        summary = summarize(results, plan, out=out, interrupted=stopped_by)
        if not summary.n_unfinished:
            close_orphan_optuna_trials(plan)
        return summary
    finally:
        if started:
            ray.shutdown()
        _remove_scratch(experiment_dir)


def bring_back_study(plan: Plan) -> None:
    """An Optuna study of an experiment on cloud storage lives on its driver (searchers.py); a resume
    on a machine without it gets the copy the last save put into the experiment."""
    local = plan.study_on_driver
    if local is None or local.exists():
        return
    data = Storage(plan.experiment_path).read_bytes(join(plan.experiment_path, OPTUNA_FILE))
    if data is None:
        raise SpecError(f"{plan.experiment_path} is an Optuna sweep whose study is neither on this machine ({local}) "
                        f"nor in the experiment ({OPTUNA_FILE}, copied there at each save by lico-tune since this "
                        f"version); resume it on the machine that ran it, or copy its study file to {local}.")
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(local.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, local)


def close_orphan_optuna_trials(plan: Plan) -> int:
    """After an experiment ends, mark the Optuna trials still RUNNING as FAIL: they were asked for
    by a driver that was killed before Tune's next state snapshot, so Tune never ran them."""
    if not plan.optuna_url:
        return 0
    import optuna
    storage = optuna.storages.RDBStorage(plan.optuna_url)
    study_id = storage.get_study_id_from_name(plan.experiment)
    n = 0
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "lico_tune", "never run: its driver was interrupted")
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        n += 1
    return n
