"""The Ray side of lico-tune: a plan (`lico_tune.plan`) -> a ray.tune.Tuner; run, resume, summarise.

Every module of this package imports ray; nothing outside it does (the CLI imports it lazily for
`run` and `resume`). The modules:

    tuner.py       build_tuner: param space, TuneConfig, RunConfig, the progress table (--verbose)
    progress.py    TrialEvents: one line per trial event and a status line (the default output)
    searchers.py   search algorithm (BasicVariantGenerator or Optuna with round-robin cells), scheduler
    generator.py   the search generators that, on resume, agree with the trials' snapshot (no trial lost)
    trainable.py   the function trainable: one trial around `train.train_trial`
    callbacks.py   CatalogCallback (the results catalog while trials run), KeepResultsOnRetry
    trackers.py    TrackerCallback: MLflow and W&B runs per trial (the spec's `tracking` section)
    repeater.py    SeedRepeater: `search.repeats`, each proposed configuration on N seeds
    run.py         init_ray, run, resume, closing orphaned Optuna trials
    cluster.py     what a joined cluster provides: nodes alive, the autoscaler's node types (plan/capacity.py)
    restore.py     resume refuses a state Ray cannot restore (Ray would start afresh in the directory)
    signed_fs.py   the filesystem Ray writes and reads its state through: signs before writing, serves verified bytes
    signing.py     SignOnSave, a callback that does nothing now (the tuner.pkl of earlier experiments names it)
    recover.py     an unfinished trial restarts from the newest checkpoint that storage holds
    retry.py       which trial errors are retried (not those a retry cannot fix)
    driver.py      the driver's liveness record (lico_driver.json, a heartbeat) and its clean-up
    interrupt.py   Ctrl-C and SIGTERM during run/resume: stop Tune gracefully, then say so
    summary.py     the end-of-run summary (statistics from `results.stats`)

How Ray runs the plan
---------------------
* **grid** and **random**: Tune's BasicVariantGenerator, arms as a grid axis named `arm`.
* **optuna**: TPE through Ray's OptunaSearch; the cells are assigned round-robin
  (`searchers.OptunaCells`) and the study lives in a real database (SQLite `optuna.db` by default).
* **Schedulers**: FIFO, or ASHA on the single metric with `epoch` as time.
* Trials may report a metric only on some epochs (`eval.every`, saliency at the end); Tune's
  strict metric check is off and the searchers and ASHA skip results without the metric. A
  trial's first report carries every key it will report (NaN until computed, see
  `train.train_trial`), so progress.csv has every column; the searchers and ASHA skip NaN too.
"""
from __future__ import annotations

import os

# The autoscaler's events ("Adding 1 node(s) of type gpu_worker", "Resized to ...") stay in the
# cluster's log (<ray temp dir>/session_latest/logs/monitor.log, and `ray status`) instead of being
# printed between lico-tune's progress lines; Ray reads this when ray is first imported, which is
# below. RAY_SCHEDULER_EVENTS=1 in the environment brings them back.
os.environ.setdefault("RAY_SCHEDULER_EVENTS", "0")

from .run import resume, run  # noqa: E402
from .summary import Summary, summarize  # noqa: E402
from .tuner import build_tuner  # noqa: E402

__all__ = ["build_tuner", "run", "resume", "summarize", "Summary"]
