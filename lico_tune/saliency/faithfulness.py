"""Insertion and deletion AUC (Petsiuk et al., RISE protocol), batched.

For each image, pixels (spatial positions: all channels of a position change together) are
ordered by saliency, descending (order="morf", most relevant first, the RISE protocol) or
ascending (order="lerf", least relevant first), ties in raster order (stable sort).
Step i = 0..n_steps changes the first min(i * pixels_per_step, H*W) pixels of that order;
n_steps = ceil(H*W / pixels_per_step).
  deletion:  start = the image, the changed pixels become the substrate: zeros in normalised space
             (the dataset mean).
  insertion: start = a Gaussian-blurred copy (sigma 5), the changed pixels are revealed from the image.
Both substrates are options (insertion_substrate, deletion_substrate: "blur" or "zeros"), recorded
per trial like the step size: the defaults above are RISE's.
The curve is the softmax probability of the target class at each of the n_steps + 1 points; the
AUC is the trapezoid over them with x = i / n_steps in [0, 1], as in RISE's CausalMetric (the
last step may change fewer pixels). overall = insertion - deletion.

Blur: torchvision.transforms.functional.gaussian_blur's computation, in plain torch (this module imports
only torch, for benchmarks/all.py; tests check it equals torchvision's): Gaussian, reflect padding, with
kernel size 4*sigma + 1 (21 at sigma 5), capped at 2*min(H, W) - 1 so that reflect padding is
defined; RISE's own code used an 11-tap kernel with zero padding (pass blur_kernel_size=11 to get
its kernel length; the padding stays reflect).

`insertion_deletion` runs every (image, mode, step) through the model in flat batches: the step
images are built on the fly, chunk by chunk, so at most batch_size step images (and the blurred
copies of the few source images a chunk touches) exist at once, whatever the number of images.
Points with the same step image are run once: insertion's last = deletion's first (the image),
a zeros substrate alone is one all-zeros forward for every image, and with blur on both sides
deletion's last = insertion's first.
`insertion_deletion_reference` is the slow reference: a plain loop over images and steps, one image
per forward. The tests check the two agree to 1e-5.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..compute import autocast
from ._util import as_targets, frozen_eval, model_device

MODES = ("insertion", "deletion")
ORDERS = ("morf", "lerf")  # most / least relevant first
SUBSTRATES = ("zeros", "blur")


def default_pixels_per_step(height: int, width: int) -> int:
    """10 pixels per step up to 64x64 px (10 on 32 px, as the LICO reproductions); 8 rows above
    (224*8 on 224 px, as RISE)."""
    return 10 if height * width <= 64 * 64 else 8 * width


def blur(images: Tensor, sigma: float = 5.0, kernel_size: int | None = None) -> Tensor:
    """Gaussian blur of (B, C, H, W), the insertion substrate (see the module docstring)."""
    h, w = images.shape[-2:]
    k = int(4 * sigma + 1) if kernel_size is None else int(kernel_size)
    k = min(k | 1, 2 * min(h, w) - 1)  # odd, and reflect padding needs pad < size
    dtype = images.dtype if images.is_floating_point() else torch.float32
    x = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, device=images.device, dtype=dtype)
    k1 = torch.exp(-0.5 * (x / sigma) ** 2)
    k1 = k1 / k1.sum()  # (k,), as torchvision's _get_gaussian_kernel1d
    c = images.shape[-3]
    kernel = (k1[:, None] * k1[None, :]).expand(c, 1, k, k)  # (C, 1, k, k) depthwise
    flat = images.reshape(-1, c, h, w)
    out = F.conv2d(F.pad(flat.to(dtype), [k // 2] * 4, mode="reflect"), kernel, groups=c)
    return out.reshape(images.shape).to(images.dtype)


def auc(curves: Tensor) -> Tensor:
    """Trapezoidal AUC of (..., n_steps + 1) curves over x = i / n_steps in [0, 1]."""
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[-1] - 1), dim=-1)


def _sort_key(saliency: Tensor, order: str) -> Tensor:
    """Saliency as a descending sort key: itself (MoRF) or negated (LeRF); ties stay in raster order."""
    if order not in ORDERS:
        raise ValueError(f"unknown order '{order}'; choose from {ORDERS}")
    return saliency.float() if order == "morf" else -saliency.float()


def _order_ranks(saliency: Tensor, order: str = "morf") -> Tensor:
    """(B, H*W) rank of each pixel in the order's sequence (0 = changed first), stable ties."""
    seq = torch.argsort(_sort_key(saliency.flatten(1), order), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(seq)
    ranks.scatter_(1, seq, torch.arange(seq.shape[1]).expand_as(seq).contiguous())
    return ranks


def _result(curves: dict[str, Tensor], pixels_per_step: int, n_pixels: int) -> dict:
    n_steps = next(iter(curves.values())).shape[1] - 1
    out: dict = {"pixels_per_step": pixels_per_step, "n_steps": n_steps,
                 "fraction": torch.clamp(torch.arange(n_steps + 1) * pixels_per_step, max=n_pixels) / n_pixels}
    for mode, c in curves.items():
        out[f"{mode}_curve"] = c
        out[mode] = auc(c)
    if "insertion" in out and "deletion" in out:
        out["overall"] = out["insertion"] - out["deletion"]
    return out


def _check(images: Tensor, saliency: Tensor, targets, modes, substrates=()) -> Tensor:
    if images.ndim != 4 or saliency.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"images (B, C, H, W) and saliency (B, H, W) expected, got "
                         f"{tuple(images.shape)} and {tuple(saliency.shape)}")
    bad = set(modes) - set(MODES)
    if bad:
        raise ValueError(f"unknown modes {sorted(bad)}; choose from {MODES}")
    for sub in substrates:
        if sub not in SUBSTRATES:
            raise ValueError(f"unknown substrate '{sub}'; choose from {SUBSTRATES}")
    return as_targets(targets, len(images))


@torch.no_grad()
def _plan(images: Tensor, saliency: Tensor, targets, modes, pixels_per_step, insertion_substrate,
          deletion_substrate) -> tuple[Tensor, dict[str, str], int, int]:
    """Checked targets, the substrate per mode, pixels per step and the number of steps."""
    targets = _check(images, saliency, targets, modes, (insertion_substrate, deletion_substrate))
    h, w = images.shape[-2:]
    pps = pixels_per_step or default_pixels_per_step(h, w)
    return targets, {"insertion": insertion_substrate, "deletion": deletion_substrate}, pps, math.ceil(h * w / pps)


def _shared_points(bi: Tensor, mi: Tensor, k: Tensor, hw: int, modes, subs: dict[str, str],
                   n_modes: int, n_points: int) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Curve points whose step image another point already has (skipped, same curve):
    (zero (J,) bool: the all-zeros substrate image, one forward for all images;
    [(dst, src) job indices]: insertion's last point is deletion's first (the image itself), and
    with a blur substrate on both, deletion's last point is insertion's first (the blurred image))."""
    zero = torch.zeros(len(bi), dtype=torch.bool)
    for m, mode in enumerate(modes):
        only_substrate = (mi == m) & ((k == hw) if mode == "deletion" else (k == 0))
        if subs[mode] == "zeros":
            zero |= only_substrate
    copies = []
    if set(modes) == set(MODES):
        ins, dele = modes.index("insertion"), modes.index("deletion")
        first = bi * n_modes * n_points  # job index of (image, mode 0, step 0)
        dst = ((mi == ins) & (k == hw)).nonzero().flatten()
        copies.append((dst, first[dst] + dele * n_points))
        if subs["insertion"] == subs["deletion"] == "blur":
            dst = ((mi == dele) & (k == hw)).nonzero().flatten()
            copies.append((dst, first[dst] + ins * n_points))
    return zero, copies


def insertion_deletion(model: nn.Module, images: Tensor, saliency: Tensor, targets,
                       pixels_per_step: int | None = None, batch_size: int = 256,
                       blur_sigma: float = 5.0, blur_kernel_size: int | None = None,
                       modes: tuple[str, ...] = MODES, insertion_substrate: str = "blur",
                       deletion_substrate: str = "zeros", precision: str = "fp32", order: str = "morf") -> dict:
    """Batched insertion/deletion. images (B, C, H, W) normalised; saliency (B, H, W); targets (B,).
    precision: autocast of the forwards ('fp32', 'bf16', 'fp16'; eval.precision).

    Returns {"insertion": (B,), "deletion": (B,), "overall": (B,), "insertion_curve": (B, S+1),
    "deletion_curve": (B, S+1), "fraction": (S+1,) share of pixels changed at each point,
    "pixels_per_step": int, "n_steps": S}, tensors on the CPU (only the requested modes' keys).
    Step images that repeat (see _shared_points) are run once.
    """
    targets, subs, pps, n_steps = _plan(images, saliency, targets, modes, pixels_per_step,
                                        insertion_substrate, deletion_substrate)
    modes = tuple(modes)
    b, (h, w) = len(images), images.shape[-2:]
    hw = h * w
    n_points, n_modes = n_steps + 1, len(modes)
    device = model_device(model)
    ranks = _order_ranks(saliency.cpu(), order)  # (B, H*W)
    grid = torch.arange(b * n_modes * n_points)  # job j = (image, mode, step) in row-major order
    bi_all, mi_all = grid // (n_modes * n_points), (grid // n_points) % n_modes
    k_all = torch.clamp((grid % n_points) * pps, max=hw)  # pixels changed
    zero, copies = _shared_points(bi_all, mi_all, k_all, hw, modes, subs, n_modes, n_points)
    run = ~zero
    for dst, _ in copies:
        run[dst] = False
    todo = grid[run]
    scores = torch.empty(len(grid))
    want_blur = "blur" in {subs[m] for m in modes}
    with frozen_eval(model), torch.inference_mode(), autocast(device.type, precision):
        if zero.any():  # the all-zeros image: every image's substrate-only point
            probs0 = torch.softmax(model(torch.zeros(1, *images.shape[1:], device=device)).float(), 1)[0]
            scores[zero] = probs0.cpu()[targets[bi_all[zero]].cpu()]
        for start in range(0, len(todo), batch_size):
            job = todo[start:start + batch_size]
            bi, mi, k = bi_all[job], mi_all[job], k_all[job]
            src, local = torch.unique(bi, return_inverse=True)  # the few images this chunk touches
            x = images[src].to(device).float()  # (u, C, H, W)
            blurred = blur(x, blur_sigma, blur_kernel_size) if want_blur else None
            changed = (ranks[bi] < k[:, None]).view(-1, 1, h, w).to(device)  # (n, 1, H, W)
            step_images = torch.empty(len(job), *x.shape[1:], device=device)  # (n, C, H, W)
            for m, mode in enumerate(modes):
                sel = (mi == m).to(device)
                if not sel.any():
                    continue
                li = local.to(device)[sel]
                sub = blurred[li] if subs[mode] == "blur" else torch.zeros((), device=device)
                if mode == "deletion":  # image -> substrate
                    step_images[sel] = torch.where(changed[sel], sub, x[li])
                else:  # substrate -> image
                    step_images[sel] = torch.where(changed[sel], x[li], sub)
            probs = torch.softmax(model(step_images).float(), dim=1)  # (n, K)
            tgt = targets[bi].to(device)
            scores[job] = probs[torch.arange(len(job), device=device), tgt].cpu()
    for dst, src in copies:
        scores[dst] = scores[src]
    curves = scores.view(b, n_modes, n_points)
    return _result({mode: curves[:, m].contiguous() for m, mode in enumerate(modes)}, pps, hw)


@torch.no_grad()
def insertion_deletion_reference(model: nn.Module, images: Tensor, saliency: Tensor, targets,
                                 pixels_per_step: int | None = None, blur_sigma: float = 5.0,
                                 blur_kernel_size: int | None = None,
                                 modes: tuple[str, ...] = MODES, insertion_substrate: str = "blur",
                                 deletion_substrate: str = "zeros", order: str = "morf") -> dict:
    """The slow reference (RISE's CausalMetric loop): per image, per step, one image per forward.

    Same arguments and result as insertion_deletion (without batch_size). For tests and benchmarks.
    """
    targets, subs, pps, n_steps = _plan(images, saliency, targets, modes, pixels_per_step,
                                        insertion_substrate, deletion_substrate)
    b, (h, w) = len(images), images.shape[-2:]
    hw = h * w
    device = model_device(model)
    curves = {mode: torch.empty(b, n_steps + 1) for mode in modes}
    with frozen_eval(model):
        for i in range(b):
            x = images[i:i + 1].to(device).float()  # (1, C, H, W)
            seq = torch.argsort(_sort_key(saliency[i].flatten().cpu(), order), descending=True, stable=True)
            for mode in modes:
                sub = blur(x, blur_sigma, blur_kernel_size) if subs[mode] == "blur" else torch.zeros_like(x)
                current, finish = (x.clone(), sub) if mode == "deletion" else (sub, x.clone())
                for step in range(n_steps + 1):
                    p = torch.softmax(model(current).float(), dim=1)[0, int(targets[i])]
                    curves[mode][i, step] = p.item()
                    if step < n_steps:
                        coords = seq[step * pps:(step + 1) * pps].to(device)
                        cur, fin = current.view(1, -1, hw), finish.view(1, -1, hw)  # (1, C, H*W)
                        cur[:, :, coords] = fin[:, :, coords]
    return _result(curves, pps, hw)
