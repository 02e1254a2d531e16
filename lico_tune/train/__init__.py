"""One trial, without Ray: the training loop, the LICO terms' health and the chance check that
every trial reports, its checkpoint, and replaying a recorded trial (rerun, explain).

    loop.py          train_trial and its phases: start (or resume), train, evaluate, explain, save
    parts.py         data and model, optimiser, schedule, EMA, predictions
    health.py        the health of the MM and OT terms (health_rules.py: when to warn)
    chance.py        did the explained model learn anything?
    checkpoint.py    saving and loading a trial's checkpoint (weights_only, checksummed)
    integrity.py     the checksums behind it: refuse a damaged or replaced file before trusting it
    rerun.py         `lico-tune rerun`: train a recorded trial again and compare bit for bit
    explain.py       `lico-tune explain`: saliency maps of a checkpoint
"""
from .loop import ResumeMismatch, TrialDiverged, train_trial
from .parts import build_trial, evaluate, warmup_ema

__all__ = ["ResumeMismatch", "TrialDiverged", "build_trial", "evaluate", "train_trial", "warmup_ema"]

# Their public name, as error lines and pickles show it (lico_tune.train.TrialDiverged: ...).
TrialDiverged.__module__ = ResumeMismatch.__module__ = __name__
