"""scripts/study_figures.py on the session's real smoke sweep (tests/results_fixtures.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from matplotlib.image import imread

pytest_plugins = ["results_fixtures"]
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "study_figures.py"


def _load():
    spec = importlib.util.spec_from_file_location("study_figures", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_figures_of_an_experiment_are_drawn_without_writing_into_the_results(results_root, tmp_path):
    figures = _load()
    before = _listing(results_root)
    out = tmp_path / "figs"
    assert figures.main([str(results_root), "ablation-smoke", str(out)]) == 0
    assert _listing(results_root) == before                       # read only
    names = sorted(p.name for p in out.iterdir())
    # No probe metrics in this sweep: no probe figure; ce and lico have galleries on both datasets.
    assert names == ["gallery_digits_seed0.png", "gallery_fashion_mnist_seed0.png", "means.png"]
    for name in names:
        img = imread(out / name)
        assert img.ndim == 3 and min(img.shape[:2]) > 100 and img.std() > 0   # a drawn picture, not blank


def test_gallery_has_one_row_per_arm_with_a_gallery_and_none_for_a_missing_seed(results_root, tmp_path):
    figures = _load()
    usable = figures.load_results(str(results_root), use_catalog=False).experiment("ablation-smoke").usable
    assert not figures.gallery_figure(usable, "digits", 7, str(tmp_path / "none.png"))
    assert not (tmp_path / "none.png").exists()
    assert figures.gallery_figure(usable, "digits", 0, str(tmp_path / "g.png"))
    rows = {a for a in figures.GALLERY_ARMS if not usable[(usable["arm"] == a) & (usable["dataset"] == "digits")
                                                           & (usable["seed"] == 0)].empty}
    assert rows == {"ce", "lico"}                                   # the broken arm has no finished trial


def test_an_experiment_without_finished_trials_is_refused(results_root, tmp_path, capsys):
    figures = _load()
    # Only the broken arm's (errored) trials: copy the experiment without the others.
    import shutil
    src = results_root / "ablation-smoke"
    dst = tmp_path / "root" / "ablation-smoke"
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if n.startswith("trial_") and "broken" not in n])
    assert figures.main([str(tmp_path / "root"), "ablation-smoke", str(tmp_path / "figs")]) == 2
    assert "no finished trials" in capsys.readouterr().err
    assert not (tmp_path / "figs").exists()
