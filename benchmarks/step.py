"""Cost of a LICO training step relative to a plain cross-entropy step.

For WRN-28-2 at batch 128 on 32 px input (CIFAR-10 class names), it times, side by side in one run
(rounds interleave the configurations, so machine noise hits them alike):
  - a plain CE step (forward, backward, SGD step),
  - a LICO step for each text encoder (MiniLM; a CLIP ViT-B/32-sized open_clip text tower with
    random weights) and each text-feature variant (eot and per_token: one prompt per class;
    rolled: M prompts per class); for CLIP both the plain forward and the exact shared-prefix
    encoding (lico_tune/models/text/prefix.py, the default), and the text tower under bf16
    autocast (text.precision),
  - K = 100 (CIFAR-100 names) rows for CLIP-B eot and rolled (shared prefix; --k100-plain adds
    the plain forward, slow on a CPU),
  - the OT loss alone (forward + backward) at the step's shapes, as a share of the LICO step.
It prints the median times, the ratios and the load average before and after. `--smoke-test`
runs a tiny version in seconds.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from lico_tune.losses import ot_loss  # noqa: E402
from lico_tune.models import build_classifier, build_prompt_learner  # noqa: E402
from lico_tune.models.lico import LicoModel  # noqa: E402
from lico_tune.spec import LicoConfig, ModelConfig, OTConfig, TextConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_tokens import CIFAR100  # noqa: E402
from timing import load_average  # noqa: E402

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
ENCODERS = {"minilm": dict(encoder="hf", model="minilm"),
            "clip-b32": dict(encoder="open_clip", model="ViT-B-32", pretrained=None)}
FEATURES = ["eot", "per_token", "rolled"]


def build(backbone: str, size: int, text: dict | None, n_ctx: int, names=CIFAR10, shared: bool = True) -> LicoModel:
    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(backbone=backbone), len(names), 3)
    lico = LicoConfig() if text else LicoConfig(alpha=0, beta=0)
    options = {"shared_prefix": shared} if text and text["encoder"] == "open_clip" else {}
    prompts = build_prompt_learner(TextConfig(n_ctx=n_ctx, **text), names, **options) if text else None
    proj = TextConfig()  # the projection's defaults
    return LicoModel(classifier, prompts, lico, classifier.feature_shape(3, size), proj.proj_hidden,
                     proj.proj_dropout).train()


def variants(encoders, k100_plain: bool):
    """(name, text options, class names, shared prefix) of every LICO configuration timed."""
    for enc in encoders:
        for feat in FEATURES:
            if enc == "clip-b32":
                yield f"{enc}/{feat}/plain", {**ENCODERS[enc], "features": feat}, CIFAR10, False
                yield f"{enc}/{feat}/shared", {**ENCODERS[enc], "features": feat}, CIFAR10, True
            else:
                yield f"{enc}/{feat}", {**ENCODERS[enc], "features": feat}, CIFAR10, False
    if "clip-b32" in encoders:
        yield "clip-b32/rolled/shared/text-bf16", {**ENCODERS["clip-b32"], "features": "rolled",
                                                   "precision": "bf16"}, CIFAR10, True
        for feat in ("eot", "rolled"):
            yield f"K100 clip-b32/{feat}/shared", {**ENCODERS["clip-b32"], "features": feat}, list(CIFAR100), True
            if k100_plain:
                yield f"K100 clip-b32/{feat}/plain", {**ENCODERS["clip-b32"], "features": feat}, list(CIFAR100), False


def stepper(model: LicoModel, x, y):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def step():
        logits, terms = model(x, y)
        loss, _ = model.loss(logits, y, terms)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def ot_stepper(model: LicoModel, batch: int, size: int):
    c, h, w = model.classifier.feature_shape(3, size)
    n_points = model.prompts.n_points
    img = torch.randn(batch, c, h * w, requires_grad=True)  # (B, C, H*W): channels as points
    txt = torch.randn(batch, n_points, h * w, requires_grad=True)  # (B, N, H*W)

    def step():
        ot_loss(img, txt, **OTConfig().model_dump(include={"epsilon", "max_iter", "tol", "gradient", "solver"})).backward()
    return step


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--n-ctx", type=int, default=12)
    parser.add_argument("--backbone", default="wrn28_2")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    parser.add_argument("--k100-plain", action="store_true", help="also the plain forward at K = 100")
    parser.add_argument("--smoke-test", action="store_true", help="tiny sizes, 1 round: checks it runs")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.rounds, args.batch, args.backbone, args.n_ctx, args.encoders = 1, 8, "tiny_cnn", 2, ["minilm"]
    print(f"before: {load_average()}", flush=True)

    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.arange(args.batch) % len(CIFAR10)
    y100 = torch.arange(args.batch) % 100
    steps = {"ce": stepper(build(args.backbone, args.size, None, args.n_ctx), x, y)}
    models, ks = {}, {}
    for name, text, names, shared in variants(args.encoders, args.k100_plain):
        model = build(args.backbone, args.size, text, args.n_ctx, names, shared)
        if len(names) == 100 and "ce100" not in steps:
            steps["ce100"] = stepper(build(args.backbone, args.size, None, args.n_ctx, names), x, y100)
        models[name], ks[name] = model, len(names)
        steps[name] = stepper(model, x, y if len(names) == 10 else y100)
        steps[f"ot:{name}"] = ot_stepper(model, args.batch, args.size)

    for fn in steps.values():  # warm-up, excluded
        fn()
    times = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            times[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"# {args.backbone}, batch {args.batch}, {args.size} px, M={args.n_ctx}, K=10 (K100: 100); "
          f"median of {args.rounds} interleaved rounds; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"CE step: {med['ce'] * 1000:.0f} ms")
    print(f"{'variant':<34}{'sequences':>10}{'LICO ms':>10}{'LICO/CE':>9}{'OT ms':>8}{'OT share':>10}")
    for name, model in models.items():
        feat = name.split("/")[1]
        seqs = ks[name] * (args.n_ctx if feat == "rolled" else 1)
        lico, ot, ce = med[name], med[f"ot:{name}"], med["ce" if ks[name] == 10 else "ce100"]
        print(f"{name:<34}{seqs:>10}{lico * 1000:>10.0f}{lico / ce:>9.2f}{ot * 1000:>8.1f}"
              f"{100 * ot / lico:>9.1f}%")
    print(f"after: {load_average()}")


if __name__ == "__main__":
    main()
