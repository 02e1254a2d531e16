"""MM's dose and temperature on a real backbone (issue 32, item 7): CE, MM at the HEAD's divisor, and
MM at tau 0.3, on WRN-28-2 and Fashion-MNIST, for as many epochs as fit in a time budget.

NOT THE FULL LICO ARM: the text side is 10 FIXED class features (MiniLM-L6, computed once by prepare.py
with lico-tune as the study's LICO arms get them at seed 0), not learnable prompts, and there is no OT.
It measures, with MM as lico_tune/losses.py computes it, MM's gradient against CE's at the backbone's
feature map (the dose, health.py's dose/mm) and where a learnable tau goes, under both temperature
readings, on the released code's WRN-28-2 (the study's backbone is a 3-layer CNN).

Arms (alpha = 10, search_spaces/study_language.yaml's lico.alpha; recipe: SGD momentum 0.9, lr 0.1
cosine over the planned epochs, weight decay 5e-4, batch 128, no augmentation, the released HEAD's):
  ce          cross-entropy alone
  mm_divisor  + alpha*MM, tau = a learnable divisor, init 2.659, shared by both softmaxes (the
              HEAD's emb_temp read literally; lico.mm temperature_form 'divisor', the spec default)
  mm_tau0.3   + alpha*MM, tau = exp(log_tau) learnable, init 0.3, bounded [0.03, 3], target tau
              fixed at 0.3 (the study's stabilised `mm` arm)
Every arm starts from the same weights and sees the same batches (seeded); the arms take turns, one
epoch each per round, so a budget cut leaves them at the same epoch. WRN's batch norm keeps running
statistics with momentum 0.001 (FixMatch's): eval-mode test accuracy lags for the first ~1,000 steps.
Imports only torch, numpy and the standard library; needs only the folder prepare.py wrote:
    python scripts/gpu_mm_dose/mm_dose_gpu.py --minutes 8 --out DIR [--device cuda] [--seed 0]
One JSON line per arm and epoch (stdout and DIR/log.jsonl), then a table (DIR/table.txt).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (before CUDA starts)

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
DATA_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FEATURES, FEATURES_INFO = "class_features.npy", "class_features.json"
MEAN, STD = 0.2860, 0.3530            # lico_tune/data/registry.py, fashion_mnist
ALPHA = 10.0                          # search_spaces/study_language.yaml, lico.alpha
HEAD_DIVISOR = 2.659                  # log(1/0.07): the released HEAD's emb_temp, lico.mm.temperature's default
SIGN, DISTANCE = "negative", "euclidean"  # lico.mm.sign, lico.mm.distance (spec defaults, both arms)
LR, MOMENTUM, WEIGHT_DECAY, BATCH, TAU_WEIGHT_DECAY = 0.1, 0.9, 5e-4, 128, 5e-4  # the spec's (a test checks)
EVAL_BATCH, PROBES_PER_EPOCH = 1000, 4  # test images per forward; gradient probes (dose) per epoch, evenly spaced
# arm -> MM temperature (None: CE alone). form/tau/lo/hi/target as lico.mm's fields.
ARMS = {"ce": None,
        "mm_divisor": {"form": "divisor", "tau": HEAD_DIVISOR, "lo": None, "hi": None, "target": None},
        "mm_tau0.3": {"form": "exp", "tau": 0.3, "lo": 0.03, "hi": 3.0, "target": 0.3}}


EUCLIDEAN_CLAMP = 1e-4  # lico_tune/losses.py's clamp of the squared distance before the square root


def mm_distances(x: Tensor, distance: str) -> Tensor:
    """lico_tune/losses.py's: the distances (B, B) of the L2-normalised rows of x (B, D)."""
    xn = F.normalize(x, dim=-1)  # (B, D)
    d2 = ((xn * xn).sum(-1, keepdim=True) + (xn * xn).sum(-1).unsqueeze(-2)
          - 2.0 * (xn @ xn.transpose(-1, -2))).clamp_min(0.0)  # (B, B)
    return d2 if distance == "squared" else d2.clamp_min(EUCLIDEAN_CLAMP).sqrt()


def mm_loss(image_emb: Tensor, text_emb: Tensor, temperature, *, sign: str, distance: str,
            target_temperature=None) -> Tensor:
    """lico_tune/losses.py's KL(A^G || A^F), 'batchmean': image_emb (B, Di) = GAP of F, text_emb (B, Dt)
    = the class text feature of each label; A = row-softmax(s * D / tau), s = -1 for 'negative';
    target_temperature: tau of A^G alone (None: `temperature` for both)."""
    s = -1.0 if sign == "negative" else 1.0
    tau_g = temperature if target_temperature is None else target_temperature
    log_af = torch.log_softmax(s * mm_distances(image_emb, distance) / temperature, dim=-1)  # (B, B)
    log_ag = torch.log_softmax(s * mm_distances(text_emb, distance) / tau_g, dim=-1)  # (B, B)
    return F.kl_div(log_af, log_ag, reduction="batchmean", log_target=True)


class Temperature(nn.Module):
    """lico_tune/models/temperature.py's forms 'divisor' (tau = the parameter) and 'exp' (tau =
    exp(log_tau), clamped on log_tau), and the optional fixed target tau."""
    def __init__(self, form: str, tau: float, lo=None, hi=None, target=None):
        super().__init__()
        self.form, self.lo, self.hi = form, lo, hi
        setattr(self, "tau" if form == "divisor" else "log_tau",
                nn.Parameter(torch.tensor(float(tau) if form == "divisor" else math.log(tau))))
        self.register_buffer("target", torch.tensor(float(target)) if target is not None else None)

    def forward(self) -> Tensor:
        if self.form == "divisor":
            return self.tau.clamp(self.lo, self.hi) if (self.lo or self.hi) else self.tau
        log_tau = self.log_tau
        if self.lo or self.hi:
            log_tau = log_tau.clamp(math.log(self.lo) if self.lo else None, math.log(self.hi) if self.hi else None)
        return log_tau.exp()


class WideBlock(nn.Module):
    """lico_tune/models/backbones.py's (FixMatch's) block: BN-LReLU(0.1)-conv3x3-BN-LReLU-conv3x3 + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, activate_before_residual: bool = False):
        super().__init__()
        self.equal = c_in == c_out
        self.activate_before_residual = activate_before_residual
        if self.equal or activate_before_residual:
            self.bn1 = nn.BatchNorm2d(c_in, momentum=0.001)
            self.relu1 = nn.LeakyReLU(0.1, inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=0.001)
        self.relu2 = nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if self.equal else nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # where the width changes, conv1 and the shortcut see x itself, activated only if activate_before_residual
        out = self.relu1(self.bn1(x)) if (self.equal or self.activate_before_residual) else x
        if not self.equal and self.activate_before_residual:
            x = out
        out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
        return out + (x if self.equal else self.shortcut(x))


class WRN28(nn.Module):
    """WRN-28-k body -> F (B, 64k, H/4, W/4) -> GAP -> linear; parameter names and init order as
    lico_tune's build_classifier('wrn28_2'), so one seed gives the same weights."""

    def __init__(self, k: int = 2, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        widths = [16, 16 * k, 32 * k, 64 * k]

        def group(c_in, c_out, stride, abr):
            return nn.Sequential(*[WideBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, abr)
                                   for i in range(4)])  # (28 - 4) / 6 = 4 blocks
        body = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), block1=group(widths[0], widths[1], 1, True),
            block2=group(widths[1], widths[2], 2, False), block3=group(widths[2], widths[3], 2, False),
            final=nn.Sequential(nn.BatchNorm2d(widths[3], momentum=0.001), nn.LeakyReLU(0.1, inplace=True))))
        for m in body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight), nn.init.zeros_(m.bias)
        self.body, self.fc = body, nn.Linear(widths[3], num_classes)
        nn.init.zeros_(self.fc.bias), nn.init.xavier_normal_(self.fc.weight)  # FixMatch's head init

    def forward_all(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """logits (B, K), F (B, C, H, W), e = GAP(F) (B, C)."""
        emb = (fmap := self.body(x)).mean(dim=(2, 3))
        return self.fc(emb), fmap, emb


def gradient_norms(weighted: list, fmap: Tensor) -> Tensor:
    """lico_tune/train/health.py's: norms (T,) of each weighted term's gradient at F (B, C, H, W), only
    where F != 0 (what passes on to the backbone); 0 for a term that is off (fp32: no loss scaling)."""
    grads = [torch.autograd.grad(t, fmap, retain_graph=True)[0] if t is not None and t.requires_grad else None
             for t in weighted]
    return torch.stack([(g.float() * (fmap != 0)).norm() if g is not None else fmap.new_zeros(()) for g in grads])


def read_idx(path: Path) -> np.ndarray:
    """A gzipped uint8 idx file (the MNIST format: magic 0 0 8 ndim, big-endian int32 dims, the bytes)."""
    buf = gzip.decompress(path.read_bytes())
    if buf[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not a uint8 idx file")
    dims = np.frombuffer(buf, ">i4", count=buf[3], offset=4).tolist()
    return np.frombuffer(buf, np.uint8, offset=4 + 4 * buf[3]).reshape(dims)


def fail(message: str):
    """Bad input: one paragraph on stderr, exit 2 (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_carried(folder: Path) -> tuple[dict, Tensor, dict]:
    """The four Fashion-MNIST .gz files and the fixed class features (10, D) with their record."""
    missing = [n for pair in DATA_FILES.values() for n in pair] + [FEATURES, FEATURES_INFO]
    missing = [n for n in missing if not (folder / n).is_file()]
    if missing:
        fail(f"the data folder {folder} lacks {', '.join(missing)}. Write it with `python "
             f"scripts/gpu_mm_dose/prepare.py` where lico-tune, the MiniLM package and Fashion-MNIST are "
             f"installed, or pass --data to the folder it wrote.")
    try:
        splits = {s: (torch.from_numpy(read_idx(folder / i).copy()).unsqueeze(1),  # (N, 1, 28, 28) uint8
                      torch.from_numpy(read_idx(folder / l).astype(np.int64))) for s, (i, l) in DATA_FILES.items()}
        info = json.loads((folder / FEATURES_INFO).read_text())
        feats = np.load(folder / FEATURES, allow_pickle=False)  # (K, D) float32
    except (OSError, EOFError, ValueError) as exc:  # gzip.BadGzipFile is an OSError, JSONDecodeError a ValueError
        fail(f"the data folder {folder} holds an unreadable file ({type(exc).__name__}: {exc}); run "
             f"prepare.py again to rewrite it")
    if hashlib.sha256((folder / FEATURES).read_bytes()).hexdigest() != info.get("sha256"):
        fail(f"{folder / FEATURES} does not match the sha256 recorded in {FEATURES_INFO}: the features were "
             f"changed after prepare.py wrote them; run prepare.py again")
    return splits, torch.from_numpy(feats).float(), info


def subset(x: Tensor, y: Tensor, n, seed: int) -> tuple[Tensor, Tensor]:
    """n images drawn without replacement (seeded), or all of them."""
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(len(y))[:n].copy()) if n else slice(None)
    return x[idx], y[idx]


def normalize(x: Tensor) -> Tensor:
    return (x.float() / 255.0 - MEAN) / STD  # uint8 (B, 1, 28, 28) -> float32 as lico_tune's ImageSet


class Arm:
    """One arm's model, optimiser, schedule, batch order and log."""

    def __init__(self, name: str, seed: int, device: torch.device, text: Tensor, n_train: int, epochs: int):
        self.name, self.mm, self.device, self.text = name, ARMS[name], device, text  # text (K, D): fixed
        torch.manual_seed(seed)  # every arm: the same initial weights
        self.model = WRN28().to(device)
        self.temperature = Temperature(**self.mm).to(device) if self.mm else None
        # tau in its own group with lico.mm.temperature_weight_decay, as lico_tune's make_optimizer
        tau = [{"params": list(self.temperature.parameters()), "weight_decay": TAU_WEIGHT_DECAY}] if self.mm else []
        self.opt = torch.optim.SGD([{"params": list(self.model.parameters())}, *tau], lr=LR, momentum=MOMENTUM,
                                   weight_decay=WEIGHT_DECAY)
        self.steps_per_epoch = math.ceil(n_train / BATCH)
        total = epochs * self.steps_per_epoch  # cosine over the planned epochs, no warm-up
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(1.0, s / max(1, total)))))
        self.gen = torch.Generator().manual_seed(seed)  # batch order, the same for every arm
        self.dose0, self.last_seconds, self.history = None, 0.0, []

    def train_step(self, x: Tensor, y: Tensor, probe: bool) -> Tensor:
        """One SGD step -> (ce, mm, dose, correct) (4,) on the device (no sync); dose nan unless a probe."""
        self.model.train()
        logits, fmap, emb = self.model.forward_all(normalize(x))
        nan = x.new_full((), math.nan, dtype=torch.float32)  # on the device: a host copy would sync the GPU
        ce, mm, dose = F.cross_entropy(logits, y), torch.zeros_like(nan), nan
        if self.mm:
            mm = mm_loss(emb, self.text[y], self.temperature(), sign=SIGN, distance=DISTANCE,
                         target_temperature=self.temperature.target)
            if probe:  # health.py's dose/mm: |g_{alpha*MM}| / |g_CE| at F
                norms = gradient_norms([ce, ALPHA * mm], fmap)
                dose = norms[1] / norms[0].clamp_min(1e-30)
        self.opt.zero_grad(set_to_none=True)
        (ce + ALPHA * mm).backward()
        self.opt.step()
        self.sched.step()
        correct = (logits.argmax(1) == y).sum()
        return torch.stack([ce.detach(), mm.detach(), dose, correct.float()])

    def run_epoch(self, train: tuple, test: tuple) -> dict:
        start, (xs, ys), lr = time.perf_counter(), train, self.sched.get_last_lr()[0]
        order = torch.randperm(len(ys), generator=self.gen).to(self.device)
        every = max(1, self.steps_per_epoch // PROBES_PER_EPOCH)
        s = torch.stack([self.train_step(xs[b], ys[b], probe=i % every == 0)
                         for i, b in enumerate(order.split(BATCH))]).cpu()  # (steps, 4): the epoch's one sync
        if len(self.history) == 0 and self.mm:  # the untrained model's dose (global step 0), kept apart
            self.dose0, s[0, 2] = s[0, 2].item(), math.nan
        doses = s[:, 2][~s[:, 2].isnan()]
        acc = evaluate(self.model, test)
        tau = self.temperature().item() if self.mm else None
        self.last_seconds = time.perf_counter() - start
        rec = {"arm": self.name, "epoch": len(self.history) + 1, "tau": tau,
               "tau_target": self.mm and self.mm["target"], "dose": doses.mean().item() if len(doses) else None,
               "dose0": self.dose0, "lr_first": lr, "loss_ce": s[:, 0].mean().item(),
               "loss_mm": s[:, 1].mean().item() if self.mm else None,
               "loss_total": (s[:, 0] + ALPHA * s[:, 1]).mean().item(),
               "train_acc": 100.0 * s[:, 3].sum().item() / len(ys), "test_acc": acc,
               "seconds": round(self.last_seconds, 3)}
        self.history.append(rec)
        return rec


@torch.no_grad()
def evaluate(model: WRN28, test: tuple) -> float:
    """Test accuracy in % (eval mode: batch norm on its running statistics)."""
    model.eval()
    xs, ys = test
    correct = sum((model.forward_all(normalize(xs[i:i + EVAL_BATCH]))[0].argmax(1) == ys[i:i + EVAL_BATCH]).sum()
                  for i in range(0, len(ys), EVAL_BATCH))
    return 100.0 * float(correct) / len(ys)


def estimate_epoch(name: str, seed: int, device, text, train, test, steps: int = 3) -> float:
    """Seconds one epoch of this arm should take, timed on a throwaway copy of it: a probe step (also
    the warm-up), `steps` plain steps, a second probe step, one evaluation batch."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    arm = Arm(name, seed, device, text, len(train[1]), 1)
    n, (x, y), took = max(1, min(steps, arm.steps_per_epoch)), (train[0][:BATCH], train[1][:BATCH]), []
    for i in range(n + 3):
        sync()
        t0 = time.perf_counter()
        if i < n + 2:
            arm.train_step(x, y, probe=i in (0, n + 1))
        else:
            evaluate(arm.model, (test[0][:EVAL_BATCH], test[1][:EVAL_BATCH]))
        sync()
        took.append(time.perf_counter() - t0)
    t_step = sum(took[1:n + 1]) / n
    probes = PROBES_PER_EPOCH if arm.mm else 0
    return arm.steps_per_epoch * t_step + probes * max(0.0, took[n + 1] - t_step) + \
        took[n + 2] * math.ceil(len(test[1]) / EVAL_BATCH)


def table(arms: list) -> str:
    """A row per arm: epochs, last and best test accuracy, dose at step 0 / epoch 1 / last, last tau."""
    cols = [("arm", 11, "s"), ("epochs", 6, "d"), ("test acc", 8, ".2f"), ("best", 6, ".2f"), ("dose0", 8, ".3g"),
            ("dose ep1", 8, ".3g"), ("dose last", 9, ".3g"), ("tau last", 8, ".4g")]
    rows = [" ".join(f"{c:{'<' if f == 's' else '>'}{w}}" for c, w, f in cols)]
    for arm in arms:
        h = arm.history or [{}]
        values = [arm.name, len(arm.history), h[-1].get("test_acc"), max((r.get("test_acc") or 0) for r in h),
                  arm.dose0, h[0].get("dose"), h[-1].get("dose"), h[-1].get("tau")]
        rows.append(" ".join(f"{'-' if v is None else format(v, f):{'<' if f == 's' else '>'}{w}}"
                             for v, (_, w, f) in zip(values, cols)))
    return "\n".join(rows)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--minutes", type=float, default=8.0, help="time budget of the whole run (default 8)")
    add("--device", default="cuda", help="cuda (default; falls back to the CPU with a warning) or cpu")
    add("--seed", type=int, default=0, help="initial weights, batch order, train subset (default 0)")
    add("--out", required=True, help="a new or empty folder for run.json, log.jsonl, table.txt")
    add("--data", default=str(HERE / "carry"), help="the folder prepare.py wrote (default: its carry/)")
    add("--epochs", type=int, help="epochs per arm (the cosine's length); default: what the budget fits, timed")
    add("--max-epochs", type=int, default=200, help="cap on the timed plan (default 200, the released recipe)")
    add("--arms", default=",".join(ARMS), help=f"a comma-separated subset of {','.join(ARMS)}")
    add("--train-subset", type=int, help="train on this many images (seeded; a CPU check)")
    add("--test-subset", type=int, help="test on this many images (the same ones for every seed)")
    a = p.parse_args(argv)
    bad = [n for n in a.arms.split(",") if n not in ARMS]
    problems = [f"--arms: unknown {bad}, choose from {list(ARMS)}"] if bad else []
    problems += [f"--{n.replace('_', '-')} must be > 0, got {getattr(a, n)}" for n in
                 ("minutes", "epochs", "max_epochs", "train_subset", "test_subset")
                 if getattr(a, n) is not None and not getattr(a, n) > 0]
    if Path(a.out).exists() and (not Path(a.out).is_dir() or any(Path(a.out).iterdir())):
        problems.append(f"--out {a.out} exists and is not an empty folder; results are never overwritten: "
                        f"name a new folder")
    if problems:
        p.error("; ".join(problems))
    return a


def main(argv=None) -> int:
    t_start, a = time.perf_counter(), parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"--device {a.device}: CUDA is not available; running on the CPU (slow: only a subsampled "
                      f"check fits a small budget)", stacklevel=1)
        a.device = "cpu"
    device, budget, names, out = torch.device(a.device), 60.0 * a.minutes, a.arms.split(","), Path(a.out)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    splits, feats, info = load_carried(Path(a.data))
    train = [t.to(device) for t in subset(*splits["train"], a.train_subset, a.seed)]
    test = [t.to(device) for t in subset(*splits["test"], a.test_subset, 0)]
    text = feats.to(device)
    out.mkdir(parents=True, exist_ok=True)
    header = {"note": "fixed class text features, not learnable prompts, no OT: MM's dose and temperature on "
                      "WRN-28-2, not the full LICO arm", "device": str(device), "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "cudnn_tf32": torch.backends.cudnn.allow_tf32, "seed": a.seed, "alpha": ALPHA,
              "arms": {n: ARMS[n] for n in names}, "train_images": len(train[1]), "test_images": len(test[1]),
              "budget_s": budget, "features": {k: info.get(k) for k in ("encoder", "package", "prompt", "n_ctx",
                                                                         "features", "pooled", "ctx_init", "sha256")}}
    if a.epochs is None:  # one timing, of the costliest arm (an MM arm, with its probes), stands for every arm
        timed = next((n for n in names if ARMS[n]), names[0])
        round_s = len(names) * estimate_epoch(timed, a.seed, device, text, train, test)
        left = budget - (time.perf_counter() - t_start)
        epochs = max(1, min(a.max_epochs, int(0.95 * left / round_s)))
        header["plan"] = {"round_seconds_estimate": round(round_s, 2), "timed_arm": timed,
                          "seconds_left": round(left, 1), "epochs": epochs}
        if round_s > left:
            warnings.warn(f"one epoch of every arm (about {round_s:.0f} s) does not fit the {left:.0f} s left "
                          f"of the budget; running 1 epoch anyway", stacklevel=1)
    else:
        epochs, header["plan"] = a.epochs, {"epochs": a.epochs, "from": "--epochs"}
    (out / "run.json").write_text(json.dumps(header, indent=1))
    print(json.dumps({"run": header}), flush=True)
    arms, stopped = [Arm(n, a.seed, device, text, len(train[1]), epochs) for n in names], None
    with open(out / "log.jsonl", "w", buffering=1) as log:  # line-buffered: a killed run keeps its lines
        for e in range(epochs):
            # a round (one epoch of every arm) starts only if it fits, if it takes as long as the last one
            if e and time.perf_counter() - t_start + sum(x.last_seconds for x in arms) > budget:
                stopped = f"budget: stopped after {e} of {epochs} planned epochs (the cosine not finished)"
                break
            for arm in arms:
                rec = {**arm.run_epoch(train, test), "elapsed": round(time.perf_counter() - t_start, 1)}
                print(json.dumps(rec), flush=True)
                log.write(json.dumps(rec) + "\n")
    summary = (f"{table(arms)}\n{stopped or f'all {epochs} planned epochs ran'}; "
               f"wall {time.perf_counter() - t_start:.0f} s on {device}; fixed class features, not the full LICO arm\n")
    (out / "table.txt").write_text(summary)
    print(summary, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
