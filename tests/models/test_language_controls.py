"""The language study's controls (issue 32): deranged class names, a text encoder without language,
label smoothing, MM's temperature under CLIP's reading, and per-test-image correctness with the
two-level (seeds x test images) interval a report builds from it."""
import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lico_tune.errors import SpecError
from lico_tune.keys import TEST_CORRECT, pack_correct, unpack_correct
from lico_tune.models import build_prompt_learner
from lico_tune.models.temperature import Temperature
from lico_tune.models.text.classnames import derangement
from lico_tune.results.resolution import two_level_interval
from lico_tune.spec import MMConfig, TextConfig, validate_trial
from lico_tune.train import build_trial, train_trial

NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


# ----------------------------------------------------------------------------- deranged names

@pytest.mark.parametrize("k", [2, 3, 5, 10, 100])
def test_derangement_moves_every_class_and_is_seeded(k):
    for seed in range(20):
        p = derangement(k, seed)
        assert sorted(p) == list(range(k))                       # a permutation: the same words
        assert all(p[i] != i for i in range(k))                  # no class keeps its own name
        assert p == derangement(k, seed)                         # the seed fixes it
    assert len({tuple(derangement(k, s)) for s in range(20)}) > {2: 0, 3: 1}.get(k, 5)   # the seed matters (k=2 has one derangement)


def test_derangement_of_one_class_is_refused():
    with pytest.raises(SpecError, match="at least 2 classes"):
        derangement(1, 0)


def test_deranged_prompts_differ_only_in_which_class_gets_which_name(one_thread):
    """Same context init, same tokens apart from the names: class k's prompt is class p[k]'s prompt."""
    torch.manual_seed(0)
    right = build_prompt_learner(TextConfig(n_ctx=4, features="rolled"), NAMES)
    torch.manual_seed(0)
    wrong = build_prompt_learner(TextConfig(n_ctx=4, features="rolled", class_names="deranged"), NAMES)
    p = derangement(len(NAMES), 0)
    assert wrong.class_names == [NAMES[j] for j in p]
    assert torch.equal(wrong.ctx, right.ctx)
    assert torch.equal(wrong.ids, right.ids[p]) and torch.equal(wrong.lengths, right.lengths[p])
    with torch.no_grad():
        a, b = right.eval()(), wrong.eval()()
    torch.testing.assert_close(b.points, a.points[p])           # the same features, reassigned
    assert not torch.allclose(b.pooled, a.pooled)


def test_trial_with_deranged_names_keeps_the_datasets_labels(tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["text"]["class_names"] = "deranged"
    parts = build_trial(validate_trial(tree))
    names = parts.data.class_names
    assert parts.class_names == list(names)                      # galleries and reports: the true names
    assert parts.model.prompts.class_names == [names[j] for j in derangement(len(names), 0)]


# ----------------------------------------------------------------------------- text without language

def test_static_text_has_no_tokenizer_weights_or_parameters():
    code = ("import sys; from lico_tune.spec import TextConfig; from lico_tune.models import build_prompt_learner; "
            "s = build_prompt_learner(TextConfig(encoder='static', n_ctx=4), [str(i) for i in range(10)]); "
            "f = s(); print(list(f.points.shape), len(list(s.parameters())), "
            "any(m in sys.modules for m in ('transformers', 'open_clip', 'tokenizers')), "
            "hasattr(s, 'encoder'), hasattr(s, 'tokenizer'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[10,", "4,", "384]", "0", "False", "False", "False"]


@pytest.mark.parametrize("features,n", [("eot", 1), ("rolled", 4), ("per_token", 5)])
def test_static_orthogonal_points_are_orthonormal_and_fixed(features, n):
    cfg = TextConfig(encoder="static", n_ctx=4, features=features)
    s = build_prompt_learner(cfg, NAMES)
    pts = s().points
    assert pts.shape == (10, n, 384)
    flat = pts.flatten(0, 1).double()
    torch.testing.assert_close(flat @ flat.T, torch.eye(10 * n, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.manual_seed(123)                                       # the trial's stream does not choose them
    assert torch.equal(build_prompt_learner(cfg, NAMES)().points, pts)
    other = TextConfig(encoder="static", n_ctx=4, features=features, static={"seed": 1})
    assert not torch.allclose(build_prompt_learner(other, NAMES)().points, pts)


def test_static_random_points_are_unit_vectors_not_orthogonal():
    pts = build_prompt_learner(TextConfig(encoder="static", n_ctx=4, static={"vectors": "random"}), NAMES)().points
    flat = pts.flatten(0, 1)
    torch.testing.assert_close(flat.norm(dim=1), torch.ones(40))
    off = (flat @ flat.T - torch.eye(40)).abs()
    assert 0.01 < off.max() < 0.5                                # Gaussian directions in 384 dimensions


def test_static_orthogonal_needs_room_and_refuses_prompt_options():
    with pytest.raises(SpecError, match=r"text.static.width = 16 .* 10 classes x 4 points"):
        build_prompt_learner(TextConfig(encoder="static", n_ctx=4, static={"width": 16}), NAMES)
    for bad in ({"finetune": True}, {"ctx_init": "a photo of a"}, {"shuffle_ctx": True},
                {"class_names": "deranged"}):
        with pytest.raises(ValueError, match="encoder 'static' has no prompts"):
            TextConfig(encoder="static", **bad)


def test_static_text_trains_mm_and_is_computed_once(tiny_trial_tree, tmp_path):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["text"] = {"encoder": "static", "n_ctx": 4, "features": "rolled"}
    tree["lico"] = {"alpha": 1.0, "beta": 1.0, "mm": {"temperature_form": "fixed", "temperature": 0.3}}
    parts = build_trial(validate_trial(tree))
    assert parts.model.static_text and parts.model.prompts.learnable is False
    final = train_trial(validate_trial(tree), tmp_path)
    assert final["train/mm"] > 0 and final["train/ot"] > 0
    assert final["environment"]["text_weights"]["weights"] == "none (fixed class vectors)"


# ----------------------------------------------------------------------------- label smoothing

def test_label_smoothing_is_torchs_and_a_hand_computation(tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["train"]["label_smoothing"] = 0.1
    model = build_trial(validate_trial(tree)).model
    logits, y = torch.randn(6, 10, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 3, 9, 3, 1, 2])
    got = model.ce(logits, y)
    torch.testing.assert_close(got, F.cross_entropy(logits, y, label_smoothing=0.1))
    logp = torch.log_softmax(logits.double(), dim=1)
    hand = (0.9 * -logp[torch.arange(6), y] + 0.1 * -logp.mean(dim=1)).mean()
    assert abs(got.item() - hand.item()) < 1e-6
    tree["train"]["label_smoothing"] = 0.0
    plain = build_trial(validate_trial(tree)).model.ce(logits, y)
    torch.testing.assert_close(plain, F.cross_entropy(logits, y))
    tree["train"]["label_smoothing"] = 1.0
    with pytest.raises(ValueError, match="label_smoothing"):
        validate_trial(tree)


# ----------------------------------------------------------------------------- MM under CLIP's reading

def test_clip_reading_of_the_released_temperature_is_tau_0_07():
    clip = Temperature(MMConfig(temperature_form="clip", temperature=2.659))
    literal = Temperature(MMConfig(temperature_form="divisor", temperature=2.659))
    assert abs(clip().item() - math.exp(-2.659)) < 1e-7 and abs(clip().item() - 0.07) < 1e-4
    assert abs(1 / clip().item() - 14.28) < 0.01                 # CLIP's multiplier
    assert literal().item() == pytest.approx(2.659)
    assert clip.parameter() is clip.logit_scale and clip.logit_scale.item() == pytest.approx(2.659)
    bounded = Temperature(MMConfig(temperature_form="clip", temperature=2.659, temperature_min=0.05,
                                   temperature_max=0.5))
    with torch.no_grad():
        bounded.logit_scale.fill_(10.0)                          # tau exp(-10) is below the bound
    assert bounded().item() == pytest.approx(0.05)               # the bounds act on tau
    with torch.no_grad():
        bounded.logit_scale.fill_(-1.0)
    assert bounded().item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"temperature 5.0 \(tau 0.006738\) lies outside"):
        MMConfig(temperature_form="clip", temperature=5.0, temperature_min=0.1)   # tau exp(-5) < 0.1


def test_clip_reading_mm_equals_a_hand_computation_at_tau_0_07(tiny_trial_tree):
    tree = copy.deepcopy(tiny_trial_tree)
    tree["lico"] = {"alpha": 1.0, "beta": 0.0, "mm": {"temperature_form": "clip", "temperature": 2.659}}
    model = build_trial(validate_trial(tree)).model.eval()
    g = torch.Generator().manual_seed(1)
    emb, y = torch.randn(5, 8, generator=g), torch.tensor([0, 1, 1, 2, 0])
    text = model.text_features()
    got = model.mm_term(emb, y, text).item()

    def softmax_rows(vectors, tau):                              # numpy, no torch
        v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        d = np.sqrt(np.maximum(((v[:, None] - v[None]) ** 2).sum(-1), 1e-4))   # the specified clamp
        z = -d / tau
        z = z - z.max(axis=1, keepdims=True)
        return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)

    tau = math.exp(-2.659)
    a_f = softmax_rows(emb.double().numpy(), tau)
    a_g = softmax_rows(text.pooled.detach().double().numpy()[y.numpy()], tau)
    hand = float((a_g * (np.log(a_g) - np.log(a_f))).sum(axis=1).mean())
    assert got == pytest.approx(hand, rel=1e-4)


# ----------------------------------------------------------------------------- per-image correctness

def test_correctness_bits_round_trip_and_refuse_a_short_record():
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 10_000):
        correct = rng.random(n) < 0.7
        rec = pack_correct(correct)
        assert np.array_equal(unpack_correct(rec), correct)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_correct({"n": 100, "bits": pack_correct(np.ones(8, bool))["bits"]})


def test_per_image_correctness_reproduces_test_accuracy_exactly(tmp_path, tiny_trial_tree):
    final = train_trial(validate_trial(tiny_trial_tree), tmp_path)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())[TEST_CORRECT]
    for key in ("test/acc", "test/acc_ema"):
        bits = unpack_correct(on_disk[key])
        assert bits.size == on_disk[key]["n"] > 0
        assert 100.0 * bits.sum() / bits.size == final[key]      # exactly, not approximately


# ----------------------------------------------------------------------------- the two-level interval

def test_two_level_interval_hand_cases():
    ones, zeros = np.ones((3, 50), bool), np.zeros((3, 50), bool)
    assert two_level_interval(ones, zeros) == (100.0, 100.0)     # every image, every seed: +100 points
    assert two_level_interval(ones, ones) == (0.0, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        two_level_interval(ones, np.ones((2, 50), bool))


def test_two_level_interval_matches_the_binomial_width_and_widens_the_seed_interval():
    rng = np.random.default_rng(0)
    n = 4000
    arm, base = rng.random((1, n)) < 0.80, rng.random((1, n)) < 0.78
    lo, hi = two_level_interval(arm, base, n_resamples=2000)
    d = arm[0].astype(float) - base[0].astype(float)
    expected = 2 * 1.96 * d.std() / math.sqrt(n) * 100           # the image-sampling width of one pair
    assert abs((hi - lo) - expected) / expected < 0.1
    # five seeds whose accuracies differ by exactly +1 point on every seed: the seed-paired interval
    # has width 0, the two-level one keeps the test set's sampling noise
    arm5 = np.zeros((5, n), bool)
    base5 = np.zeros((5, n), bool)
    for s in range(5):
        idx = rng.permutation(n)
        base5[s, idx[:3000]] = True
        arm5[s, idx[:3040]] = True
    lo5, hi5 = two_level_interval(arm5, base5)
    assert lo5 < 1.0 < hi5 and hi5 - lo5 > 0.2


def test_report_rows_get_the_image_interval_and_verdicts_state_which_they_used(tmp_path):
    import pandas as pd
    from types import SimpleNamespace
    from lico_tune.results.report import ExperimentReport
    from lico_tune.results.resolution import add_image_intervals, trial_correctness

    rng = np.random.default_rng(1)
    rows = []
    for arm, p in (("ce", 0.80), ("mm", 0.81)):
        for seed in range(3):
            d = tmp_path / f"{arm}_{seed}"
            d.mkdir()
            bits = rng.random(2000) < p
            (d / "metrics.json").write_text(json.dumps({TEST_CORRECT: {"test/acc": pack_correct(bits)}}))
            rows.append({"experiment": "x", "dataset": "fmnist", "arm": arm, "seed": seed, "path": str(d),
                         "test/acc": 100 * bits.mean()})
    usable = pd.DataFrame(rows)
    trial_correctness.cache_clear()
    paired = pd.DataFrame([{"experiment": "x", "dataset": "fmnist", "metric": "test/acc", "arm": "mm",
                            "baseline": "ce", "seeds": [0, 1, 2]},
                           {"experiment": "x", "dataset": "fmnist", "metric": "test/acc", "arm": "mm",
                            "baseline": "ce", "seeds": [0, 1, 7]}])     # seed 7 has no trial: no interval
    out = add_image_intervals(paired, usable, 0.95)
    lo, hi = out.loc[0, "ci_low_images"], out.loc[0, "ci_high_images"]
    assert lo < hi and math.isnan(out.loc[1, "ci_low_images"])
    # verdicts: a seed-paired "lower" whose seeds x images interval crosses 0 is not a finding
    rep = SimpleNamespace(alpha=0.05)
    base = {"mean_diff": -0.5, "p_adj": 0.01, "p_tost_adj": math.nan, "margin": math.nan}
    assert ExperimentReport.verdict(rep, {**base, "ci_low_images": -1.0, "ci_high_images": 0.3}) == \
        "inconclusive at the test set's resolution (lower over seeds)"
    assert ExperimentReport.verdict(rep, {**base, "ci_low_images": -1.0, "ci_high_images": -0.1}) == \
        "lower (seeds × images)"
    assert ExperimentReport.verdict(rep, base) == "lower"                                # older trials: seeds only
    eq = {"mean_diff": 0.1, "p_adj": 0.5, "p_tost_adj": 0.01, "margin": 1.0}
    assert ExperimentReport.verdict(rep, {**eq, "ci_low_images": -1.2, "ci_high_images": 0.8}) == \
        "inconclusive at the test set's resolution (equivalent (±1) over seeds)"
    assert ExperimentReport.verdict(rep, {**eq, "ci_low_images": -0.6, "ci_high_images": 0.8}) == \
        "equivalent (±1) (seeds × images)"
