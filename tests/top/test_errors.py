"""One error base class for bad input (lico_tune.errors.BadInput): every error the user can fix
derives from it, the CLI catches it once (one paragraph, exit 2), and anything else, a bug, keeps
its traceback instead of reading as "bad input"."""
import pytest

import lico_tune.cli.parser as cli
from lico_tune.train.checkpoint import CheckpointError
from lico_tune.data import DatasetMissing
from lico_tune.errors import TrialConfigError
from lico_tune.errors import BadInput, OutputExists, SpecError, UnreadableInput
from lico_tune.models import TextEncoderMissing
from lico_tune.train.rerun import RecordError
from lico_tune.train import ResumeMismatch


@pytest.mark.parametrize("kind", [SpecError, DatasetMissing, TextEncoderMissing, CheckpointError, TrialConfigError,
                                  ResumeMismatch, RecordError, OutputExists, UnreadableInput])
def test_every_fixable_error_is_bad_input(kind):
    assert issubclass(kind, BadInput)


def test_the_cli_catches_bad_input_once_and_leaves_bugs_alone(monkeypatch, capsys):
    def fixable(args):
        raise OutputExists("runs/x already holds a checkpoint. Pass --resume to continue it.")
    monkeypatch.setattr(cli, "cmd_validate", fixable)
    assert cli.main(["validate", "any.yaml"]) == 2
    err = capsys.readouterr().err
    assert "runs/x already holds a checkpoint" in err and "Traceback" not in err

    def bug(args):
        raise ValueError("a programming error")
    monkeypatch.setattr(cli, "cmd_validate", bug)
    with pytest.raises(ValueError, match="a programming error"):
        cli.main(["validate", "any.yaml"])
