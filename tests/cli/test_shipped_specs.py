"""Shipped specs by name (lico_tune/cli/shipped.py): `lico-tune run quickstart.yaml` and `lico-tune
specs` without a checkout's search_spaces/ (tests/project/test_packaging.py runs them from an installed wheel)."""
from pathlib import Path

import pytest

from lico_tune.cli import main
from lico_tune.cli.shipped import describe, find_spec, shipped_specs
from lico_tune.errors import SpecError
from ray_helpers import REPO

SHIPPED = sorted(p.name for p in (REPO / "search_spaces").glob("*.yaml"))


def test_a_shipped_spec_is_found_by_name_or_checkout_path_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quickstart = str(REPO / "search_spaces" / "quickstart.yaml")
    for arg in ("quickstart.yaml", "quickstart", "search_spaces/quickstart.yaml"):
        assert find_spec(arg) == (quickstart, True), arg
    (tmp_path / "quickstart.yaml").write_text("name: mine\n")     # the user's own file wins
    assert find_spec("quickstart.yaml") == ("quickstart.yaml", False)


@pytest.mark.parametrize("arg", ["nope.yaml", "other/quickstart.yaml", "/abs/quickstart.yaml"])
def test_an_unknown_spec_names_what_can_be_passed(tmp_path, monkeypatch, arg):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as exc:
        find_spec(arg)
    msg = str(exc.value)
    assert msg.startswith(f"{arg}: no such spec file.") and "`lico-tune specs`" in msg
    assert ", ".join(SHIPPED) in msg


def test_specs_lists_every_shipped_spec_with_a_description(capsys):
    assert main(["specs"]) == 0
    out = capsys.readouterr().out
    assert set(shipped_specs()) == set(SHIPPED) and "quickstart.yaml" in SHIPPED
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()[1:]}
    assert sorted(lines) == SHIPPED and all(len(d) > 10 for d in lines.values())
    assert lines["quickstart.yaml"] == ("Quick start: does LICO change accuracy on real data, offline, on a "
                                        "laptop CPU?")


def test_a_description_is_the_first_sentence_cut_at_the_width(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("# Question: does it work, e.g. here? More text.\n# Second line.\nname: s\n")
    assert describe(spec) == "Question: does it work, e.g. here?"
    spec.write_text("# " + "word " * 40 + "\nname: s\n")
    assert describe(spec, width=30) == "word word word word word..."
    spec.write_text("name: s\n")
    assert describe(spec) == ""


def test_validate_and_run_accept_a_shipped_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "quickstart.yaml"]) == 0
    assert "quickstart.yaml: ok (name quickstart" in capsys.readouterr().out
    taken = tmp_path / "res" / "q"
    taken.mkdir(parents=True)
    (taken / "other.txt").write_text("x")
    # `run` finds the spec, then refuses the experiment that exists (before Ray starts): the lookup is run's too.
    assert main(["run", "quickstart", "--storage", str(tmp_path / "res"), "--name", "q"]) == 2
    err = capsys.readouterr().err
    assert "note: quickstart is the spec shipped with lico-tune" in err and "already is not empty" in err
    assert Path(taken / "other.txt").read_text() == "x"
