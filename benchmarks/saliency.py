"""Insertion/deletion throughput against the model's own forward limit, the per-image loop, and Quantus.

For each model (random weights, eval mode, random seeded saliency maps: the cost does not depend
on them) it prints, in one run:
  limit     the model's best batched inference rate: forwards/s (images per second) in
            torch.inference_mode at each of a few batch sizes; the best is the limit
  batched   lico_tune's insertion_deletion (both modes) with chunks of the best batch size: curve
            points/s (2 * (S+1) per image) as a share of the limit; it runs fewer forwards than
            points (repeated step images run once), printed too
  bf16      the same under eval.precision bf16 (autocast)
  loop      insertion_deletion_reference: one image per forward (RISE's loop), per-image ratio
  quantus   Quantus 0.6 PixelFlipping (deletion) on the same model, images, maps, configured for
            equal work: whole pixels (every channel of a pixel flips together: the attribution is
            given per channel with all channels of a pixel adjacent in the order, and
            features_in_step = C * pixels per step), the same order (ours: descending saliency,
            ties in raster order), the same steps and a zero substrate; lico_tune deletion-only
            with a zeros substrate does the same forwards. Curves are checked equal (Quantus has
            no unperturbed first point: ours[:, 1:]); ratio = Quantus time / ours.
Load averages are printed before and after. `--smoke-test`: tiny, seconds. Quantus is optional
(`pip install lico-tune[bench]`); without it that row is skipped.

  wrn28_2   32 px, 10 classes, 10 pixels per step (103 steps); Quantus at 16 px/step (64 steps,
            its step must divide H*W*C)
  resnet50  224 px, 1000 classes, 224*8 pixels per step (28 steps)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lean import load_lean, resnet50, wrn28  # noqa: E402
from timing import describe, load_average, resolve_device, seconds  # noqa: E402

faith = load_lean("saliency.faithfulness")


def limit(model, shape, device, batch_sizes, images_per_size: int) -> dict[int, float]:
    """forwards/s of the model at each batch size (inference mode, after one warm-up forward)."""
    rates = {}
    for bs in batch_sizes:
        x = torch.randn(bs, *shape, device=device)
        n = max(1, math.ceil(images_per_size / bs))
        with torch.inference_mode():
            model(x)

            def run():
                for _ in range(n):
                    model(x)
            rates[bs] = n * bs / seconds(run, device)
    return rates


def quantus_deletion(model, x, sal, y, pps: int, device) -> tuple[torch.Tensor, float]:
    """Quantus PixelFlipping curves (n, S) and seconds, equal-work configuration (module docstring)."""
    import numpy as np
    import quantus

    n, c, h, w = x.shape
    ranks = faith._order_ranks(sal.cpu())  # (n, H*W), 0 = most salient
    # per-channel attribution: pixel p channel ch gets C*(HW - rank p) - ch, all distinct, so
    # Quantus's argsort(-a) lists the C channels of the most salient pixel first, then the next.
    a = (c * (h * w - ranks))[:, None, :] - torch.arange(c)[None, :, None]  # (n, C, H*W)
    class WholePixelFlipping(quantus.PixelFlipping):
        def custom_preprocess(self, **kwargs):
            # PixelFlipping asserts features_in_step | H*W (one feature per pixel), but flips
            # per element; C * pps elements a step never divide H*W for C = 3. The last step is
            # then partial, as ours; nothing else changes.
            return None

    metric = WholePixelFlipping(features_in_step=c * pps, perturb_baseline=0.0, normalise=False,
                                abs=False, disable_warnings=True, display_progressbar=False)
    xs, ys, As = x.cpu().numpy(), y.cpu().numpy(), a.view(n, c, h, w).float().numpy()
    out = {}

    def run():
        out["c"] = metric(model=model, x_batch=xs, y_batch=ys, a_batch=As, device=str(device),
                          softmax=True, channel_first=True, batch_size=n)
    t = seconds(run, device)
    return torch.tensor(np.asarray(out["c"], dtype=np.float64)).float(), t


def bench(name: str, model, what: str, size: int, num_classes: int, pps: int, n: int, n_ref: int,
          batch_sizes, device, quantus_pps: int | None, images_per_size: int) -> dict:
    model.eval().to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g).to(device)
    sal = torch.rand(n, size, size, generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    row: dict = {"model": name, "what": what, "size": size, "pixels_per_step": pps, "images": n}
    rates = limit(model, (3, size, size), device, batch_sizes, images_per_size)
    best_bs = max(rates, key=rates.get)
    row.update(limit_by_batch={str(k): round(v, 1) for k, v in rates.items()}, best_batch=best_bs,
               limit=rates[best_bs])

    calls = {"n": 0}
    hook = model.register_forward_pre_hook(lambda m, i: calls.__setitem__("n", calls["n"] + len(i[0])))
    faith.insertion_deletion(model, x[:1], sal[:1], y[:1], pps, batch_size=best_bs)  # warm-up
    calls["n"] = 0
    res = {}
    t = seconds(lambda: res.update(faith.insertion_deletion(model, x, sal, y, pps, batch_size=best_bs)), device)
    hook.remove()
    points = n * 2 * (res["n_steps"] + 1)
    row.update(n_steps=res["n_steps"], batched_s=t, points_per_s=points / t, forwards_run=calls["n"],
               forwards_per_s=calls["n"] / t, share_of_limit=points / t / rates[best_bs])
    low = {}
    t16 = seconds(lambda: low.update(faith.insertion_deletion(model, x, sal, y, pps, batch_size=best_bs,
                                                              precision="bf16")), device)
    row.update(bf16_points_per_s=points / t16, bf16_speedup=t / t16,
               bf16_max_auc_diff=max((low[k] - res[k]).abs().max().item() for k in ("insertion", "deletion")))
    ref = {}
    t_ref = seconds(lambda: ref.update(faith.insertion_deletion_reference(model, x[:n_ref], sal[:n_ref], y[:n_ref], pps)),
                    device)
    row.update(loop_images_per_s=n_ref / t_ref, batched_images_per_s=n / t, batched_vs_loop=(n / t) / (n_ref / t_ref),
               loop_max_diff=max((res[k][:n_ref] - ref[k]).abs().max().item()
                                 for k in ("insertion_curve", "deletion_curve")))
    if quantus_pps:
        try:
            import quantus
            row["quantus_version"] = quantus.__version__
        except ImportError:
            row["quantus"] = "not installed (pip install lico-tune[bench])"
        else:
            ours = {}
            t_ours = seconds(lambda: ours.update(faith.insertion_deletion(
                model, x, sal, y, quantus_pps, batch_size=best_bs, modes=("deletion",),
                deletion_substrate="zeros")), device)
            qc, t_q = quantus_deletion(model, x, sal, y, quantus_pps, device)
            row.update(quantus_steps=ours["n_steps"], quantus_s=t_q, ours_deletion_s=t_ours,
                       quantus_ratio=t_q / t_ours,
                       quantus_max_curve_diff=(qc - ours["deletion_curve"][:, 1:]).abs().max().item())
    return row


def report(row: dict) -> str:
    lines = [f"{row['model']}: {row['what']}, {row['size']} px, {row['n_steps']} steps of {row['pixels_per_step']} px, "
             f"{row['images']} images",
             f"  limit    {row['limit']:.0f} forwards/s at batch {row['best_batch']} "
             f"(by batch: {row['limit_by_batch']})",
             f"  batched  {row['points_per_s']:.0f} curve points/s = {100 * row['share_of_limit']:.1f}% of the limit "
             f"({row['forwards_run']} forwards run, {row['forwards_per_s']:.0f}/s; chunks of {row['best_batch']})",
             f"  bf16     {row['bf16_points_per_s']:.0f} points/s ({row['bf16_speedup']:.2f}x fp32; "
             f"max |AUC diff| {row['bf16_max_auc_diff']:.1e})",
             f"  loop     {row['loop_images_per_s']:.3f} images/s; batched {row['batched_images_per_s']:.3f} images/s "
             f"= {row['batched_vs_loop']:.1f}x (max |curve diff| {row['loop_max_diff']:.1e})"]
    if "quantus_ratio" in row:
        lines.append(f"  quantus  {row['quantus_version']} PixelFlipping {row['quantus_s']:.2f} s vs ours "
                     f"{row['ours_deletion_s']:.2f} s ({row['quantus_steps']} steps, deletion, zeros): "
                     f"{row['quantus_ratio']:.2f}x; max |curve diff| {row['quantus_max_curve_diff']:.1e}")
    elif "quantus" in row:
        lines.append(f"  quantus  {row['quantus']}")
    return "\n".join(lines)


def run(device, smoke: bool, quantus: bool = True) -> list[dict]:
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    if smoke:
        return [bench("wrn28_1", wrn28(1, 10), "lean wrn28_1", 16, 10, 32, 2, 1, (8, 16), device,
                      32 if quantus else None, 16)]
    rows = [bench("wrn28_2", wrn28(2, 10), "WRN-28-2", 32, 10, 10, 256 if cuda else 8, 4 if cuda else 1,
                  (64, 128, 256, 512, 1024) if cuda else (16, 32, 64, 128, 256), device, 16 if quantus else None,
                  4096 if cuda else 512)]
    model, what = resnet50(1000)
    rows.append(bench("resnet50", model, what, 224, 1000, 224 * 8, 64 if cuda else 2, 2 if cuda else 1,
                      (32, 64, 128, 256) if cuda else (4, 8, 16, 32), device, 224 * 8 if quantus else None,
                      1024 if cuda else 64))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke-test", action="store_true", help="tiny sizes, seconds")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda[:N]")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"{describe(device)}; before: {load_average()}", flush=True)
    rows = run(device, args.smoke_test)
    for row in rows:
        print(report(row), flush=True)
    print(f"after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
