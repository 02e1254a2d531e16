"""Every benchmark in one command, for a GPU machine: `python benchmarks/all.py --device cuda`.

Needs torch only (transformers, torchvision and Quantus are used when present): the models are
the plain-torch stand-ins of benchmarks/lean.py (lico-tune's WRN-28-k; a CLIP ViT-B/32-sized text
tower with random weights, open_clip's block structure) and the lico_tune modules it times
(losses, models.text.prefix, saliency.faithfulness) import only torch. It writes one results file,
JSON plus a markdown table beside it (--out, default benchmarks/results-<device>.json/.md).

Sections (GPU: CUDA-event timings after warm-up, median of --rounds interleaved rounds):
  step      a LICO training step (WRN-28-2, batch 128, 32 px, M = 12: CE + MM + OT, SGD) over a
            CE step, for the CLIP-B text tower: eot, per_token, rolled; plain vs exact shared-prefix
            encoding; K = 10 (CIFAR-10) and K = 100 (CIFAR-100); text tower in bf16 (autocast)
  ot        the OT loss alone (forward + backward) at the step's shapes, and its share of the step
  saliency  benchmarks/saliency.py: the model's forward limit, batched insertion/deletion as a share
            of it, bf16, the per-image loop, Quantus (when installed)
`--smoke-test` runs all of it tiny, in seconds (tests/project/test_benchmarks.py runs it on the CPU).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import class_tokens  # noqa: E402
import saliency  # noqa: E402
from lean import ClipTower, PromptLearner, load_lean, wrn28  # noqa: E402
from timing import describe, load_average, median_seconds, resolve_device  # noqa: E402

# The spec's defaults (lico_tune/spec/trial.py MMConfig / OTConfig), written out: this script runs on
# machines without pydantic, so it cannot import the spec; tests/project/test_benchmarks.py checks they agree.
MM_KW = {"sign": "negative", "distance": "euclidean"}
OT_KW = {"epsilon": 0.1, "max_iter": 100, "tol": 1e-6, "gradient": "envelope", "solver": "native"}

losses = load_lean("losses")
precision = load_lean("precision")


class LicoStep:
    """One SGD step of CE (+ alpha MM + beta OT when a prompt learner is given), as lico-tune's."""

    def __init__(self, clf: nn.Module, prompts: PromptLearner | None, x, y, text_precision=None):
        self.clf, self.prompts, self.x, self.y, self.text_precision = clf, prompts, x, y, text_precision
        params = list(clf.parameters())
        if prompts is not None:
            c, h, w = clf.forward_all(x[:1])[1].shape[1:]
            self.proj = nn.Sequential(nn.Linear(prompts.encoder.dim, 512), nn.ReLU(inplace=True),
                                      nn.Linear(512, h * w)).to(x.device)
            self.log_tau = nn.Parameter(torch.zeros((), device=x.device))
            params += [prompts.ctx, self.log_tau, *self.proj.parameters()]
        self.opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def text(self):
        with precision.autocast(self.x.device.type, self.text_precision):
            points, pooled = self.prompts()
        return points.float(), pooled.float()

    def __call__(self) -> None:
        logits, fmap, emb = self.clf.forward_all(self.x)
        loss = nn.functional.cross_entropy(logits, self.y)
        if self.prompts is not None:
            points, pooled = self.text()
            loss = loss + 10.0 * losses.mm_loss(emb, pooled[self.y], self.log_tau.exp(), **MM_KW)
            loss = loss + losses.ot_loss(fmap.flatten(2), self.proj(points)[self.y], **OT_KW)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def step_section(device, smoke: bool, rounds: int) -> list[dict]:
    batch, size, n_ctx = (2, 8, 2) if smoke else (128, 32, 12)
    tower_kw = dict(width=32, layers=1, heads=2, output_dim=32) if smoke else {}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    rows = []
    for K, table in ((10, class_tokens.CIFAR10), (100, class_tokens.CIFAR100)):
        y = (torch.arange(batch) % K).to(device)
        torch.manual_seed(0)
        tower = ClipTower(**tower_kw).to(device)
        variants = [("eot", False, None), ("eot", True, None), ("per_token", False, None),
                    ("per_token", True, None), ("rolled", False, None), ("rolled", True, None),
                    ("eot", True, "bf16"), ("rolled", True, "bf16")]
        steps = {"ce": LicoStep(wrn28(2, K).to(device).train(), None, x, y)}
        ot_fns = {}
        for feat, shared, prec in variants:
            name = f"{feat}/{'shared' if shared else 'plain'}" + (f"/text-{prec}" if prec else "")
            torch.manual_seed(0)
            learner = PromptLearner(tower, list(table.values()), n_ctx, feat, shared, class_tokens.SOS,
                                    class_tokens.PERIOD, class_tokens.EOS).to(device)
            steps[name] = LicoStep(wrn28(2, K).to(device).train(), learner, x, y, prec)
            if not shared and prec is None:  # OT alone at this variant's shapes (same for shared)
                c, hw = steps["ce"].clf.forward_all(x[:1])[1].flatten(2).shape[1:]
                img = torch.randn(batch, c, hw, device=device, requires_grad=True)
                n_points = {"eot": 1, "per_token": n_ctx + 1, "rolled": n_ctx}[feat]
                txt = torch.randn(batch, n_points, hw, device=device, requires_grad=True)
                ot_fns[feat] = (lambda i=img, t=txt: losses.ot_loss(i, t, **OT_KW).backward())
        med = median_seconds({**steps, **{f"ot:{k}": f for k, f in ot_fns.items()}}, device, rounds)
        for name in steps:
            if name == "ce":
                continue
            feat = name.split("/")[0]
            rows.append({"K": K, "variant": name, "sequences": K * (n_ctx if feat == "rolled" else 1),
                         "lico_ms": 1000 * med[name], "ce_ms": 1000 * med["ce"],
                         "lico_over_ce": med[name] / med["ce"], "ot_ms": 1000 * med[f"ot:{feat}"],
                         "ot_share": med[f"ot:{feat}"] / med[name]})
    return rows


def markdown(results: dict) -> str:
    m = results["meta"]
    out = [f"# Benchmarks: {m['device']}", "", f"{m['date']}; {m['load_before']} (before), "
           f"{m['load_after']} (after); {m['wall_s']:.0f} s; smoke test: {m['smoke_test']}", "",
           "## LICO step / CE step (WRN-28-2, batch 128, 32 px, M = 12, CLIP-B-sized text tower)", "",
           "| K | variant | sequences | LICO ms | CE ms | LICO/CE | OT ms | OT share |", "|---|---|---|---|---|---|---|---|"]
    for r in results["step"]:
        out.append(f"| {r['K']} | {r['variant']} | {r['sequences']} | {r['lico_ms']:.1f} | {r['ce_ms']:.1f} | "
                   f"{r['lico_over_ce']:.2f} | {r['ot_ms']:.2f} | {100 * r['ot_share']:.1f}% |")
    out += ["", "## Insertion/deletion", "", "| model | limit fwd/s (batch) | batched points/s | share of limit | "
            "bf16 x | batched/loop | Quantus/ours | Quantus curve diff |", "|---|---|---|---|---|---|---|---|"]
    for r in results["saliency"]:
        q = (f"{r['quantus_ratio']:.2f}", f"{r['quantus_max_curve_diff']:.1e}") if "quantus_ratio" in r else ("n/a", "")
        out.append(f"| {r['model']} {r['size']} px | {r['limit']:.0f} ({r['best_batch']}) | {r['points_per_s']:.0f} | "
                   f"{100 * r['share_of_limit']:.1f}% | {r['bf16_speedup']:.2f} | {r['batched_vs_loop']:.1f} | {q[0]} | {q[1]} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda[:N]")
    ap.add_argument("--smoke-test", action="store_true", help="tiny sizes, seconds (CPU is fine)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds of the step section (default 5; smoke 1)")
    ap.add_argument("--no-quantus", action="store_true", help="skip the Quantus comparison")
    ap.add_argument("--out", default=None, help="results JSON (a .md table is written beside it)")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    if args.smoke_test:
        torch.set_num_threads(1)  # tiny ops: threads only add contention on a shared machine
    out = Path(args.out or HERE / f"results-{device.type}{'-smoke' if args.smoke_test else ''}.json")
    t0 = datetime.datetime.now()
    meta = {"device": describe(device), "date": t0.isoformat(timespec="seconds"), "load_before": load_average(),
            "smoke_test": args.smoke_test, "argv": sys.argv[1:]}
    print(f"{meta['device']}; {meta['load_before']}", flush=True)
    step = step_section(device, args.smoke_test, args.rounds or (1 if args.smoke_test else 5))
    for r in step:
        print(f"step K={r['K']:<3} {r['variant']:<24} LICO/CE {r['lico_over_ce']:.2f}  OT {100 * r['ot_share']:.1f}%",
              flush=True)
    sal = saliency.run(device, args.smoke_test, quantus=not (args.no_quantus or args.smoke_test))
    for r in sal:
        print(saliency.report(r), flush=True)
    meta.update(load_after=load_average(), wall_s=(datetime.datetime.now() - t0).total_seconds())
    results = {"meta": meta, "step": step, "saliency": sal}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(markdown(results))
    print(f"wrote {out} and {out.with_suffix('.md')} ({meta['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
