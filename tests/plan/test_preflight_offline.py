"""Offline-safe runs: a dataset or CLIP weights the trials would download are checked once in the
driver before Ray starts (one request with a short timeout), and a trial error that a retry cannot
fix is tried once. "Offline" is made hermetic: every HTTP(S) request goes to a proxy on a closed
local port, so these tests behave the same on a machine with internet."""
import copy
import re
import time

from ray_helpers import lico_tune, trial_dirs, write_spec

OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


def _refused_before_ray(out, ray_tmp, storage, started) -> str:
    took = time.time() - started
    assert out.returncode == 2, out.stdout[-3000:]
    assert took < 30, f"took {took:.0f} s"
    assert "Traceback" not in out.stdout and out.stdout.count("\n") <= 2, out.stdout
    assert not storage.exists(), "nothing is written"
    from pathlib import Path
    assert not list(Path(ray_tmp).iterdir()), "Ray never started (no session in its temp folder)"
    return out.stdout


def test_a_download_true_dataset_offline_is_refused_in_seconds(ray_tmp, tmp_path, tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["data"] = {"name": "cifar10", "download": True, "root": str(tmp_path / "data"), "val_fraction": 0.1}
    spec = write_spec(tmp_path / "c.yaml", tree, name="c", search={"max_failures": 3})
    started = time.time()
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res")], ray_tmp, timeout=120, **OFFLINE)
    text = _refused_before_ray(out, ray_tmp, tmp_path / "res", started)
    assert "Dataset 'cifar10'" in text and "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in text
    assert "cannot be downloaded now" in text and "data.root" in text


def test_clip_weights_by_name_without_a_cache_are_refused_in_seconds(ray_tmp, tmp_path, tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["text"] = {"encoder": "open_clip", "model": "ViT-B-32", "pretrained": "openai", "n_ctx": 4}
    spec = write_spec(tmp_path / "o.yaml", tree, name="o")
    empty = tmp_path / "home"
    for offline in ({"HF_HUB_OFFLINE": "0", **OFFLINE}, {"HF_HUB_OFFLINE": "1"}):   # unreachable; offline mode
        started = time.time()
        out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res")], ray_tmp, timeout=120,
                        HOME=str(empty), HF_HOME=str(empty / "hf"), **offline)
        text = _refused_before_ray(out, ray_tmp, tmp_path / "res", started)
        assert "The CLIP weights ViT-B-32/openai (text.pretrained)" in text and "cannot be downloaded now" in text
        assert str(empty / "hf") in text and "text.pretrained to the path of a local checkpoint" in text
        if offline["HF_HUB_OFFLINE"] == "1":
            assert "HF_HUB_OFFLINE is set" in text
        else:
            assert "https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/" in text


def test_a_non_retryable_trial_error_is_tried_once_and_explained_in_one_line(ray_tmp, tmp_path, tiny_trial_tree):
    # An image folder that exists but holds no train/: the driver's check passes, every trial fails.
    (tmp_path / "images").mkdir()
    tree = copy.deepcopy(tiny_trial_tree)
    tree["data"] = {"name": "imagefolder", "root": str(tmp_path / "images"), "val_fraction": 0.2}
    spec = write_spec(tmp_path / "f.yaml", tree, name="f", search={"space": {"train.seed": {"grid": [0, 1]}},
                                                                  "max_failures": 3})
    spec.write_text("# A header as the shipped specs have.\n# Cost: 2 tiny trials,\n# seconds each. More.\n"
                    + spec.read_text())
    out = lico_tune(["run", str(spec), "--storage", str(tmp_path / "res"), "--name", "f"], ray_tmp, timeout=240)
    assert out.returncode == 1, out.stdout[-3000:]
    assert f"note: {spec} says: Cost: 2 tiny trials, seconds each. This run asks for no GPU" in out.stdout
    assert not re.search(r"^\d\d:\d\d:\d\d retry ", out.stdout, re.M), out.stdout[-3000:]
    assert out.stdout.count("(not retried: a retry cannot fix it)") == 2
    assert "Traceback" not in out.stdout, "Ray's traceback goes to the trial's files, not the terminal"
    assert "every trial errored: lico_tune.data.errors.DatasetMissing: Dataset 'imagefolder' not found" in out.stdout
    assert "check the metric name" not in out.stdout
    dirs = trial_dirs(tmp_path / "res" / "f")
    assert len(dirs) == 2
    for d in dirs:
        errors = (d / "error.txt").read_text()
        assert errors.count("Failure #") == 1, errors[:2000]               # one attempt, no retry
        log = (d / "train.log").read_text()
        assert "Traceback" in log and "DatasetMissing" in log


def test_the_shipped_paper_spec_offline_is_refused_before_ray(ray_tmp, tmp_path):
    # What a new user types first on a machine without internet (HOME empty: no cached CIFAR-10).
    started = time.time()
    out = lico_tune(["run", "search_spaces/ot_eps.yaml", "--set", "resources.gpu=0", "--storage", str(tmp_path / "res")],
                    ray_tmp, timeout=120, HOME=str(tmp_path / "home"), **OFFLINE)
    text = _refused_before_ray(out, ray_tmp, tmp_path / "res", started)
    assert "Dataset 'cifar10'" in text and str(tmp_path / "home" / ".cache" / "lico-tune" / "data" / "cifar10") in text
