"""Checks made before any trial starts, so that `lico-tune run` fails in seconds, not hours.

- `check_resources`: a trial's `resources` must fit one node of the cluster. A GPU on a CPU-only
  machine (or more CPUs than it has) would leave every trial PENDING forever; it is refused
  naming the fix (`--set resources.gpu=0`). With `--smoke-test` a GPU spec on a machine without a
  GPU runs on the CPU instead, with a printed notice. Called with this machine's resources before
  Ray starts (local runs) and with `ray.cluster_resources()` after joining a cluster.
- `check_new_experiment`: `run` never writes into an existing experiment: a directory that is not
  empty (its lock file aside) is refused, naming `lico-tune resume` and --name.
- `check_inputs`: every dataset and text-encoder weight file the trials need is found on this
  machine, with the same errors as `lico-tune train`, or, where the spec lets trials download it
  (`data.download: true`, an open_clip `pretrained` tag such as `openai`), can be downloaded now:
  one request with a short timeout per URL (fetchable.py), so that an offline machine is told in
  seconds (local runs; on a cluster the workers' disks count and are not checked here).
Raises SpecError (the CLI exits 2). No Ray import.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from ..errors import SpecError
from .cells import Plan


def local_resources() -> dict[str, float]:
    """{'CPU': n, 'GPU': n} of this machine, as a local Ray would see it."""
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(_gpu_count())}


def _gpu_count() -> int:
    """CUDA devices, without importing torch when it is not loaded yet (seconds on a busy machine):
    the NVIDIA driver lists one folder per GPU, narrowed by CUDA_VISIBLE_DEVICES as CUDA would."""
    if "torch" in sys.modules:
        return sys.modules["torch"].cuda.device_count()
    gpus = Path("/proc/driver/nvidia/gpus")
    n = len(list(gpus.iterdir())) if gpus.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        n = min(n, len([v for v in visible.split(",") if v.strip() and not v.strip().startswith("-")]))
    return n


def check_resources(plan: Plan, available: dict[str, float], where: str = "this machine",
                    say: Callable[[str], None] = print) -> None:
    res = plan.spec.resources
    gpus, cpus = float(available.get("GPU", 0)), float(available.get("CPU", 0))
    if res.gpu > gpus:
        if plan.smoke and gpus == 0:
            say(f"notice: the spec asks for resources.gpu={res.gpu:g} but {where} has no GPU; the smoke "
                f"test runs on the CPU instead (resources.gpu=0, train.device cpu).")
            spec = plan.spec.model_copy(deep=True)
            spec.resources.gpu = 0.0
            plan.spec = spec
            plan.force = {**plan.force, "train.device": "cpu"}
        else:
            have = "no GPU" if gpus == 0 else f"{gpus:g} GPU(s)"
            raise SpecError(f"resources.gpu={res.gpu:g}: {where} has {have}, so every trial would wait for one "
                            f"forever. Run with --set resources.gpu=0 (trials train on the CPU), or join a "
                            f"cluster with GPUs (--address).")
    device = plan.spec.base.train.device
    if device.startswith("cuda") and gpus == 0 and plan.force.get("train.device") != "cpu":
        raise SpecError(f"train.device={device}: {where} has no GPU. Run with --set train.device=auto "
                        f"(CUDA when there is one) or --set train.device=cpu.")
    if res.cpu > cpus:
        raise SpecError(f"resources.cpu={res.cpu:g}: {where} has {cpus:g} CPU(s), so no trial could start. "
                        f"Run with --set resources.cpu={max(1, int(cpus))} or less, or join a larger cluster (--address).")


def _distinct_trials(plan: Plan):
    """One resolved config per distinct (data, text) section among the plan's cells."""
    seen = set()
    for cfg in plan.cell_configs:
        key = json.dumps([cfg.data.model_dump(mode="json"), cfg.text.model_dump(mode="json")], sort_keys=True)
        if key not in seen:
            seen.add(key)
            yield cfg


def check_inputs(plan: Plan) -> None:
    """Every dataset and text-encoder weight file of the plan's cells exists here."""
    from ..data import DatasetMissing
    from ..models import TextEncoderMissing
    for cfg in _distinct_trials(plan):
        try:
            _check_data(cfg.data)
            _check_text(cfg.text)
        except (DatasetMissing, TextEncoderMissing) as exc:
            raise SpecError(f"{exc} (checked before starting any trial; every trial needs it)") from None


def _check_data(data) -> None:
    name = data.name
    if name == "digits":
        return
    if name in ("fashion_mnist", "placed_fmnist"):
        from ..data import fashion_mnist
        if fashion_mnist.find_dir(data.root) is None:
            if not data.download:
                fashion_mnist.load(data)             # raises DatasetMissing with the fix
            from torchvision.datasets import FashionMNIST
            _downloadable("fashion_mnist", FashionMNIST.mirrors[0] + FashionMNIST.resources[0][0],
                          fashion_mnist.candidate_dirs(data.root), "the four idx .gz files of Fashion-MNIST",
                          "sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or `python -c \"import "
                          "torchvision; torchvision.datasets.FashionMNIST('DIR', download=True)\"")
        return
    if name == "imagefolder":
        from ..data.errors import missing
        if data.root is None or not Path(data.root).expanduser().is_dir():
            raise missing("imagefolder", [data.root or "(data.root not set)"],
                          "Set data.root to a folder with train/ and test/ class folders.")
        return
    if name in ("cifar10", "cifar100", "svhn"):
        from ..data import torchvision_sets
        cls = torchvision_sets.dataset_class(name)
        root = torchvision_sets.dataset_root(data, name, cls)
        inner, what = torchvision_sets.expected_files(name, cls)
        if (root / inner).exists():
            return
        if not data.download:
            torchvision_sets.load(data, name)    # raises DatasetMissing with the fix
        url = cls.split_list["train"][0] if name == "svhn" else cls.url
        _downloadable(name, url, [root / inner], what,
                      f"python -c \"import torchvision; torchvision.datasets.{cls.__name__}('{root}', download=True)\"")


def _check_text(text) -> None:
    if text.encoder == "hf":
        from ..models.text.hf import minilm_dir
        if text.model == "minilm":
            minilm_dir()
            return
        if Path(text.model).expanduser().is_dir():
            return
        from huggingface_hub import try_to_load_from_cache

        from ..models import TextEncoderMissing
        try:
            cached = try_to_load_from_cache(text.model, "config.json")
        except Exception:                    # not a valid repo id (e.g. a path that does not exist)
            cached = None
        if not isinstance(cached, str):
            raise TextEncoderMissing(
                f"The Hugging Face text encoder '{text.model}' (text.model) is neither a local directory nor in "
                f"the Hugging Face cache; nothing is downloaded at run time. Set text.model to 'minilm' or to "
                f"a local directory with config.json, the weights and the tokenizer files.")
    elif text.encoder == "open_clip" and text.pretrained and _looks_like_path(text.pretrained):
        from ..models.text.openclip import read_checkpoint
        p = Path(text.pretrained).expanduser()
        if not p.is_file():
            read_checkpoint(p)                   # raises TextEncoderMissing with the fix
    elif text.encoder == "open_clip" and text.pretrained:
        _check_clip_tag(text.model, text.pretrained)


def _downloadable(name: str, url: str, looked: list, what: str, command: str) -> None:
    """A dataset that trials would download: refused now when its URL does not answer."""
    from ..data.errors import missing
    from .fetchable import probe
    why = probe(url)
    if why is not None:
        raise missing(name, looked, f"data.download is true, but it cannot be downloaded now: {url} gave {why} "
                      f"(one try, {_timeout()}); this machine may be offline. Fetch it where there is internet "
                      f"(`{command}`) and copy it here, or set data.root to a folder that holds {what}.",
                      why="is not on this machine")


def _check_clip_tag(arch: str, tag: str) -> None:
    """CLIP weights named by an open_clip tag: in the cache, or downloadable now."""
    import open_clip

    from ..models import TextEncoderMissing
    from ..models.text.base import hf_cache_dir
    from .fetchable import clip_weights_cached, clip_weights_url, hub_offline, probe
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise SpecError(f"text.pretrained: '{tag}' is neither a file nor a pretrained tag of {arch} "
                        f"(tags: {', '.join(tags) or 'none'}).")
    if clip_weights_cached(cfg):
        return
    url = clip_weights_url(cfg)
    offline = hub_offline()
    why = f"{offline} is set, so nothing is downloaded" if offline and cfg.get("hf_hub") else (
        f"{url} gave {probe(url)} (one try, {_timeout()})" if url and probe(url) else None)
    if why:
        raise TextEncoderMissing(
            f"The CLIP weights {arch}/{tag} (text.pretrained) are not in the Hugging Face cache {hf_cache_dir()} "
            f"(repo {cfg.get('hf_hub', '?').rstrip('/')}) nor in {Path('~/.cache/clip').expanduser()}, and cannot be "
            f"downloaded now: {why}. Run `python -c \"import open_clip; open_clip.create_model('{arch}', "
            f"pretrained='{tag}')\"` on a machine with internet and copy that cache here, or set text.pretrained "
            f"to the path of a local checkpoint file.")


def _timeout() -> str:
    from .fetchable import TIMEOUT_S
    return f"timeout {TIMEOUT_S:g} s"


def _looks_like_path(s: str) -> bool:
    return "/" in s or s.endswith((".pt", ".bin", ".pth", ".safetensors"))


def check_new_experiment(plan: Plan) -> None:
    """Refuse (OutputExists) to run into an experiment directory that already holds anything: its
    results would be mixed with the new run's and its summary replaced. Checked before Ray starts
    and again under the experiment's lock (two `run --name X` started at once)."""
    from ..errors import OutputExists
    from ..layout import LOCK_FILE, RUN_FILE
    from ..storage import Storage
    path = plan.experiment_path
    names = [e.name for e in Storage(path).list(path) if e.name != LOCK_FILE]
    if not names:
        return
    what = (f"holds an experiment ({len(names)} entries, {RUN_FILE} among them)" if RUN_FILE in names else
            f"is not empty ({len(names)} entries, e.g. {sorted(names)[0]})")
    raise OutputExists(f"{path} already {what}; `lico-tune run` never writes into an existing experiment, so "
                       f"nothing was changed. To continue that experiment: `lico-tune resume {path}`. For a new "
                       f"one: another --name, or leave out --name for a new stamped name "
                       f"({plan.spec.name}_<date>_<time>).")


def preflight(plan: Plan, address: Optional[str], say: Callable[[str], None] = print) -> None:
    """The checks `run` makes before Ray starts (the experiment is new; local runs: resources and input files)."""
    check_new_experiment(plan)
    if address or os.environ.get("RAY_ADDRESS"):
        return                                   # checked against the cluster once joined
    check_resources(plan, local_resources(), say=say)
    check_inputs(plan)


def check_plan(experiment_dir: str) -> str:
    """The experiment directory (normalised) when it holds a readable plan; SpecError otherwise."""
    from ..layout import RUN_FILE
    from ..storage import join, normalise_root, read_text
    d = normalise_root(experiment_dir)
    text = read_text(join(d, RUN_FILE))
    if text is None:
        raise SpecError(f"{d} is not a lico-tune experiment directory: it has no {RUN_FILE}. "
                        f"Pass the directory `lico-tune run` printed (<storage>/<experiment name>).")
    try:
        Plan.from_yaml(text)
    except SpecError as exc:
        raise SpecError(f"{join(d, RUN_FILE)}: {exc}") from None
    return d


def check_resume(experiment_dir: str) -> None:
    """What `resume` checks before Ray starts: the directory holds a readable plan, and the files Ray
    will unpickle are the ones this user's lico-tune signed (trust.py)."""
    from ..trust import verify_experiment
    verify_experiment(check_plan(experiment_dir))
