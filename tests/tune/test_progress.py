"""The driver's progress lines (tune/progress.py) on Ray's own Trial objects: a health warning gets a
line when a result first carries it, once, and its kind is repeated on the trial's done line."""
from ray.tune.experiment import Trial

from lico_tune.keys import HEALTH_WARNINGS, MM_REF, MM_REF0, MM_REF_CHANGE, TAU, HealthWarning, health_text
from lico_tune.train.health_rules import mm_warning
from lico_tune.tune.progress import TrialEvents


def _trial(arm: str, trial_id: str) -> Trial:
    return Trial("lico", config={"arm": arm, "train.seed": 0}, stub=True, trial_id=trial_id)


def _lines(capsys) -> list[str]:
    return [ln.split(" ", 1)[1] for ln in capsys.readouterr().out.splitlines()]  # without the clock


def test_a_health_warning_is_printed_when_first_reported_and_named_on_the_done_line(capsys):
    inactive = mm_warning({TAU: 0.9, MM_REF: 2.3, MM_REF0: 2.3, MM_REF_CHANGE: 0.0}, tau_initial=0.3)
    assert inactive is not None and inactive.kind == "MM inactive"
    at_chance = HealthWarning("at chance", "test accuracy 10.0% is within chance (10%)")
    events, mm = TrialEvents(["val/acc"], interval_s=0), _trial("mm", "abc_00001")

    events.on_trial_result(0, [mm], mm, {"epoch": 1, "test/acc": 84.0, HEALTH_WARNINGS: ""})
    events.on_trial_result(0, [mm], mm, {"epoch": 2, "test/acc": 84.5, HEALTH_WARNINGS: health_text([inactive])})
    events.on_trial_result(0, [mm], mm, {"epoch": 3, "test/acc": 84.6,
                                         HEALTH_WARNINGS: health_text([inactive, at_chance])})
    mm.update_last_result({"epoch": 3, "test/acc": 84.6, HEALTH_WARNINGS: health_text([inactive, at_chance])})
    events.on_trial_complete(0, [mm], mm)

    assert _lines(capsys) == [
        "epoch 1  abc_00001 arm mm  acc 84.00",
        "epoch 2  abc_00001 arm mm  acc 84.50",
        f"health   abc_00001 arm mm  {inactive}",
        "epoch 3  abc_00001 arm mm  acc 84.60",
        f"health   abc_00001 arm mm  {at_chance}",
        "done     abc_00001 arm mm  acc 84.60  health: MM inactive, at chance",
    ]


def test_a_healthy_trial_prints_no_health_line_and_warnings_are_per_trial(capsys):
    inactive = HealthWarning("OT inactive", "0.2% of the squared gradient norm at the backbone's features")
    events = TrialEvents([], interval_s=0)
    ce, lico = _trial("ce", "abc_00000"), _trial("lico", "abc_00002")
    events.on_trial_result(0, [ce, lico], lico, {"epoch": 1, HEALTH_WARNINGS: health_text([inactive])})
    events.on_trial_result(0, [ce, lico], ce, {"epoch": 1, "test/acc": 80.0, HEALTH_WARNINGS: ""})
    ce.update_last_result({"epoch": 1, "test/acc": 80.0})  # a result without the key: no warning
    events.on_trial_complete(0, [ce, lico], ce)
    lines = _lines(capsys)
    assert lines == ["epoch 1  abc_00002 arm lico", f"health   abc_00002 arm lico  {inactive}",
                     "epoch 1  abc_00000 arm ce  acc 80.00", "done     abc_00000 arm ce  acc 80.00"]
