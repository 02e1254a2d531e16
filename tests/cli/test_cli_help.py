"""The command line's manners: --version, an example and the exit codes in every command's help,
and `train`'s progress display (a bar with ETA on a terminal, plain lines otherwise)."""
import io
import subprocess
import sys

import pytest

import lico_tune
from lico_tune.cli import build_parser
from lico_tune.cli.help import train_display
from ray_helpers import REPO


def _subparsers():
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


def test_version_is_the_package_version():
    out = subprocess.run([sys.executable, "-m", "lico_tune.cli", "--version"], capture_output=True, text=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and out.stdout.strip() == f"lico-tune {lico_tune.__version__}"


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_command_help_has_an_example_and_the_exit_codes(name):
    text = _subparsers()[name].format_help()
    assert "example" in text and f"lico-tune {name} " in text.split("example")[1], text
    assert "exit codes:" in text and "0 " in text.split("exit codes:")[1]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_train_display_is_a_bar_on_a_terminal_and_lines_otherwise():
    plain = io.StringIO()
    log, progress, close = train_display(False, plain)
    log("epoch 1/2 done")
    close()
    assert progress is None and plain.getvalue() == "epoch 1/2 done\n"

    tty = _Terminal()
    log, progress, close = train_display(False, tty)
    for step in range(1, 11):
        progress(step, 10)
    log("epoch 1/1 done")
    close()
    text = tty.getvalue()
    assert "10/10" in text and "<" in text, text       # tqdm's "elapsed<remaining" ETA
    assert "epoch 1/1 done" in text

    log, progress, close = train_display(True, tty)
    assert progress is None
