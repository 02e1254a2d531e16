"""Ray's search generators that, on resume, agree with the trials Ray restored: `LicoSearchGenerator`
(a searcher's: Optuna) and `LicoVariantGenerator` (grid and random).

Ray saves an experiment in pieces (TuneController.save_to_dir): the trials (experiment_state-*.json),
the generator and its wrappers (search_gen_state-*.json: how many trials were created, the
concurrency limiter's live trials, the repeater's groups), the searcher (searcher-state-*.pkl) and,
for an Optuna study on cloud storage, a copy of the study (optuna.db, searchers.py). A background
thread uploads them one by one while the next save may already rewrite the staging folder, so a
driver killed mid-way leaves pieces of different saves (Ray warns of it: "may cause consistency
issues upon restoration"). Measured on S3 (tests/tune/test_crash_resume_s3.py): the generator's count
said 4 of 4 trials created while the trials' snapshot held 2, so the resumed sweep ended with 2
trials, the other 2 lost for good; with a concurrency limit (search.max_concurrent) the lost trials
held its slots and the resume waited forever (grid and Optuna, tests/tune/test_search_resume.py).

So after restoring, the generator takes the trials' snapshot (the state Ray restored the trials
from, in the same staging folder) as the truth:
* a trial the searcher handed out but the snapshot lacks never ran (the newest ones: a snapshot
  holds every trial created before it): the concurrency limiter frees its slot; the repeater takes
  it out of its group, so the same configuration is handed out again for that repeat index, and a
  group left empty is dropped; Optuna records a proposal left with no trial as FAIL ("never run")
  and its crossed cell goes to the front of `OptunaCells`' queue, so the next proposal gets it;
* a trial in the snapshot that the searcher does not know (its piece is the older one) runs and
  counts; the searcher is not told of it (the Optuna trial it was is not in the study the searcher
  holds), and the cells move on past it;
* the count of created trials becomes the snapshot's, so the sweep creates what is missing and ends
  with every planned trial.
The grid's generator has no searcher to ask again, so it keeps each trial it creates (config,
evaluated values, tag): a trial the snapshot lacks is created again from that record (a new trial
id, first in line), and trials of the snapshot it does not know are the ones its deterministic
sequence would make next, so it draws and records them. Experiments made before this version
(whose generator kept no record) are left to Ray as before.

The repair reads and edits Ray's and Optuna's internal state (the generators' counts and live
trials, the repeater's groups, Ray's trial iterator, the Optuna searcher's trials), which Ray may
change in any release: it runs only on the Ray minor version it was tested with (TESTED_RAY); on
another, a resume warns that the snapshot was not checked and leaves the state to Ray.
"""
from __future__ import annotations

import copy
import logging

import ray
from ray.tune.experiment.config_parser import _create_trial_from_spec
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Repeater, SearchGenerator

from ..keys import TRIAL_INDEX
from ..results.tune_state import latest_state_name, read_state
from ..storage import Storage

logger = logging.getLogger(__name__)
NEVER_RUN = "never run: its driver was interrupted"      # an Optuna trial's lico_tune user attr
TESTED_RAY = "2.60"     # the Ray minor version whose internals the repair uses (tests/tune/test_search_resume.py)


def repairs(version: str) -> bool:
    """Whether the repair runs under this Ray version (its major.minor is TESTED_RAY's)."""
    return version.split(".")[:2] == TESTED_RAY.split(".")


def agree_or_warn(generator, trials: dict[str, dict], version: str) -> None:
    """`generator.agree_with(trials)` under the tested Ray version, else a warning that it did not."""
    if repairs(version):
        generator.agree_with(trials)
    else:
        logger.warning("resume: the search state was not checked against the trials' snapshot: lico-tune's repair "
                       "of a driver killed mid-save was tested with Ray %s.x and this is Ray %s, so the state is left "
                       "to Ray, which may lose or hold back trials handed out after the last snapshot (docs/sweeps.md); "
                       "install ray==%s.* for the checked resume", TESTED_RAY, version, TESTED_RAY)


def _stack(searcher) -> list:
    """The searcher and the wrappers around it, outermost first (limiter, repeater, Optuna)."""
    out = [searcher]
    while hasattr(out[-1], "searcher"):
        out.append(out[-1].searcher)
    return out


def snapshot(dirpath: str) -> dict[str, dict]:
    """The trials of the newest experiment state in Ray's staging folder (the one Ray restored from)."""
    storage = Storage(dirpath)
    return read_state(storage, dirpath, latest_state_name(e.name for e in storage.list(dirpath)))


def _warn(lost: int, unknown: int, before: int, after: int) -> None:
    logger.warning("resume: the saved search state and the trials' snapshot are from different saves (a driver "
                   "killed mid-upload); %d trial(s) handed out after the snapshot are created again, %d trial(s) "
                   "of the snapshot were unknown to the search state; trials created: %d -> %d",
                   lost, unknown, before, after)


class LicoSearchGenerator(SearchGenerator):
    def restore_from_dir(self, dirpath: str):
        super().restore_from_dir(dirpath)
        trials = snapshot(dirpath)
        if trials:
            agree_or_warn(self, trials, ray.__version__)

    def agree_with(self, trials: dict[str, dict]) -> None:
        """Make the searcher stack, the cells and the count agree with `trials` (trial id -> its
        snapshot record: results/tune_state.read_state)."""
        stack = _stack(self.searcher)
        repeated = any(isinstance(layer, Repeater) for layer in stack)
        lost, primary_lost, unknown = set(), set(), set(trials)
        for layer in stack:
            if isinstance(layer, ConcurrencyLimiter):
                lost |= set(layer.live_trials) - set(trials)
                layer.live_trials -= lost
            elif isinstance(layer, Repeater):
                primary_lost = _drop_repeats(layer, trials)
                lost |= primary_lost
                unknown -= set(layer._trial_id_to_group)
            elif hasattr(layer, "_ot_trials"):
                gone = primary_lost if repeated else set(layer._ot_trials) - set(trials)
                lost |= gone
                if not repeated:
                    unknown -= set(layer._ot_trials)
                _never_ran(layer, sorted(gone & set(layer._ot_trials)))
        cells = getattr(stack[-1], "_space", None)
        if hasattr(cells, "skip"):
            cells.skip(sum(1 for t in unknown if not (trials[t].get("config") or {}).get(TRIAL_INDEX)))
        if lost or unknown or self._counter != len(trials):
            _warn(len(lost), len(unknown), self._counter, len(trials))
            self._counter = len(trials)
            self._finished = False


def _drop_repeats(repeater: Repeater, trials: dict[str, dict]) -> set[str]:
    """Take the repeats the snapshot lacks out of their groups; returns the primary trial ids of the
    groups left empty (their proposals never ran), which are dropped."""
    empty = set()
    for trial_id in [t for t in repeater._trial_id_to_group if t not in trials]:
        group = repeater._trial_id_to_group.pop(trial_id)
        group._trials.pop(trial_id, None)
        getattr(repeater, "_scores", {}).get(group.primary_trial_id, {}).pop(trial_id, None)
        if not group._trials:
            empty.add(group.primary_trial_id)
    repeater._groups = [g for g in repeater._groups if g._trials]
    # the newest group continues: an emptied one is gone, a partly emptied one is refilled next
    repeater._current_group = repeater._groups[-1] if repeater._groups else None
    return empty


def _never_ran(optuna_search, trial_ids: list[str]) -> None:
    """Record the Optuna trials of proposals that never ran as FAIL, and give their cells back."""
    import optuna
    cells = optuna_search._space
    for trial_id in trial_ids:
        ot_trial = optuna_search._ot_trials.pop(trial_id)
        try:
            cell = ot_trial.user_attrs.get("cell")
            ot_trial.set_user_attr("lico_tune", NEVER_RUN)
            optuna_search._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        except (KeyError, RuntimeError, ValueError):    # the study copy lacks it, or it is told already
            cell = None
        if cell and hasattr(cells, "requeue"):
            cells.requeue(dict(cell))


_ENDED = ("TERMINATED", "ERROR")


class LicoVariantGenerator(BasicVariantGenerator):
    """BasicVariantGenerator that records each trial it creates (`_made`: trial id -> config, evaluated
    values, tag, in creation order) and creates the ones a resume finds missing first (`_redo`)."""

    def next_trial(self):
        redo = self.__dict__.get("_redo")
        if redo:
            if self.max_concurrent > 0 and len(self._live_trials) >= self.max_concurrent:
                return None
            trial = self._again(*redo.pop(0))
            self._live_trials.add(trial.trial_id)
        else:
            trial = super().next_trial()
        if trial is not None:
            self._record(trial)
        return trial

    def _record(self, trial) -> None:
        self.__dict__.setdefault("_made", {})[trial.trial_id] = (
            copy.deepcopy(trial.config), copy.deepcopy(trial.evaluated_params), trial.experiment_tag)

    def _again(self, config: dict, evaluated: dict, tag: str):
        """A trial like a lost one: the same config, a new id (the lost one's directory may hold a start)."""
        iterator = self._iterators[-1]
        spec = copy.deepcopy(iterator.unresolved_spec)
        spec["config"] = copy.deepcopy(config)
        trial_id = iterator.uuid_prefix + ("%05d" % iterator.counter)
        iterator.counter += 1
        return _create_trial_from_spec(spec, iterator.parser, evaluated_params=evaluated, trial_id=trial_id,
                                       experiment_tag=tag)

    def is_finished(self) -> bool:
        return super().is_finished() and not self.__dict__.get("_redo")

    def restore_from_dir(self, dirpath: str):
        super().restore_from_dir(dirpath)
        trials = snapshot(dirpath)
        if trials and "_made" in self.__dict__:      # made by this version: it kept its record
            agree_or_warn(self, trials, ray.__version__)

    def agree_with(self, trials: dict[str, dict]) -> None:
        made = self.__dict__.setdefault("_made", {})
        before = len(made)
        lost = [t for t in made if t not in trials]
        unknown = [t for t in trials if t not in made]
        for trial_id in lost:
            self._live_trials.discard(trial_id)
        self._redo = [made.pop(t) for t in lost] + list(self.__dict__.get("_redo") or [])
        for _ in unknown:                         # the next ones of the sequence: draw and record them
            if not self._trial_iter:
                self._trial_iter = iter(self._trial_generator)
            trial = next(self._trial_iter, None)
            if trial is None:
                break
            self._record(trial)
        self._live_trials |= {t for t in unknown if trials[t].get("status") not in _ENDED}
        if lost or unknown:
            _warn(len(lost), len(unknown), before, len(trials))
