"""Prompt learner over an open_clip CLIP text tower (the paper's text encoder).

Only the text tower is built (no vision tower). `text.model` is an open_clip architecture
('ViT-B-32', ...), 'tiny-clip' (a 2-layer, width-64 config with random weights, for tests), or a
path to a JSON model config. `text.pretrained` is None (random weights), a local checkpoint
(.pt/.pth/.bin state dict, .safetensors, or OpenAI's TorchScript file), or an open_clip tag such as
'openai', looked up in open_clip's cache (never downloaded when offline).

Speed: the CLIP text transformer is causal, so no token attends to anything after it and cutting
the batch right after the last EOT changes no feature. Prompts are therefore padded only to the
longest of the batch (L = max EOT position + 1, ~15-20 tokens instead of 77), with the positional
embedding and the causal mask sliced to L. `truncate=False` pads to the full context length (for
benchmarks; identical features). With the class token at the end and one shared context, the
[SOS] + context prefix common to all prompts is encoded once (prefix.py; exact).
"""
from __future__ import annotations

import copy
import json
import os
import zipfile
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from ...spec import TextConfig
from .base import PromptLearner, TextEncoderCorrupt, TextEncoderMissing, TextFeatures, clean_class_name, hf_cache_dir
from .prefix import shared_prefix_forward, shared_prefix_len

TINY_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
BUILTIN_CONFIGS = {"tiny-clip": TINY_CLIP}
OFFLINE_ENV = ("HF_HUB_OFFLINE",)        # what huggingface_hub (open_clip's downloader) honours
_TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def model_config(name: str) -> dict:
    """The open_clip model config (embed_dim, text_cfg, ...) named by text.model."""
    import open_clip

    if name in BUILTIN_CONFIGS:
        return copy.deepcopy(BUILTIN_CONFIGS[name])
    if name.endswith(".json"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"text.model: the open_clip model config {path} does not exist")
        cfg = json.loads(path.read_text())
        cfg = cfg.get("model_cfg", cfg)
    else:
        try:
            cfg = open_clip.get_model_config(name)
        except Exception:
            cfg = None
        if cfg is None:
            raise ValueError(
                f"text.model: '{name}' is not an open_clip architecture. Use one of open_clip's names "
                f"(e.g. ViT-B-32, ViT-B-16, RN50), 'tiny-clip', or the path of a JSON model config.")
    if "text_cfg" not in cfg or "embed_dim" not in cfg:
        raise ValueError(f"text.model '{name}': an open_clip config needs 'embed_dim' and 'text_cfg'")
    return cfg


class ClipTextTower(nn.Module):
    """The text parts of an open_clip CLIP, with CLIP's state_dict key names (token_embedding,
    positional_embedding, transformer, ln_final, text_projection)."""

    def __init__(self, cfg: dict, quick_gelu: bool = False):
        super().__init__()
        text_cfg = dict(cfg["text_cfg"])
        unsupported = [k for k in ("hf_model_name", "embed_cls") if text_cfg.get(k)]
        if unsupported or text_cfg.get("pool_type", "argmax") == "none":
            raise NotImplementedError(
                f"open_clip text towers with {unsupported or 'pool_type none'} are not supported; "
                f"use a CLIP-style tower (e.g. ViT-B-32) or text.encoder: hf")
        from open_clip.model import _build_text_tower  # builds the text tower alone, no vision tower

        src = _build_text_tower(cfg["embed_dim"], text_cfg, quick_gelu=quick_gelu or cfg.get("quick_gelu", False))
        self.token_embedding = src.token_embedding
        self.positional_embedding = src.positional_embedding
        self.transformer = src.transformer
        self.ln_final = src.ln_final
        self.text_projection = src.text_projection  # Parameter (W, D), nn.Linear, or None
        self.register_buffer("attn_mask", src.attn_mask, persistent=False)  # (77, 77) causal, or None
        self.pool_type = src.pool_type
        if getattr(src, "use_pad_mask", False):
            raise NotImplementedError("open_clip text towers with a padding mask are not supported")
        self.context_length = src.positional_embedding.shape[0]
        self.width = src.width
        self.output_dim = self.width if self.text_projection is None else (
            self.text_projection.out_features if isinstance(self.text_projection, nn.Linear)
            else self.text_projection.shape[1])

    @property
    def causal(self) -> bool:
        return self.attn_mask is not None

    def project(self, x: Tensor) -> Tensor:
        if self.text_projection is None:
            return x
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection

    def forward(self, embeds: Tensor, eot_pos: Tensor, need_tokens: bool = False
                ) -> tuple[Tensor, Optional[Tensor]]:
        """embeds (B, L, W) token embeddings, L <= context length -> pooled (B, D), tokens (B, L, D)."""
        B, L, _ = embeds.shape
        cast = self.transformer.get_cast_dtype()
        x = embeds.to(cast) + self.positional_embedding[:L].to(cast)
        mask = self.attn_mask[:L, :L] if self.attn_mask is not None else None
        x = self.transformer(x, attn_mask=mask)
        x = self.ln_final(x)  # (B, L, W)
        if self.pool_type == "first":
            idx = torch.zeros_like(eot_pos)
        elif self.pool_type == "last":
            idx = torch.full_like(eot_pos, L - 1)
        else:  # 'argmax' / 'eos': the EOT token
            idx = eot_pos
        pooled = self.project(x[torch.arange(B, device=x.device), idx])  # (B, D)
        return pooled, (self.project(x) if need_tokens else None)


# ----------------------------------------------------------------------------- weights


def _looks_like_path(text: str) -> bool:
    return (os.sep in text or "/" in text or text.startswith((".", "~"))
            or text.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt")))


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in zf.namelist())


def read_checkpoint(path: Path) -> tuple[dict, bool]:
    """(state dict, is OpenAI TorchScript) of a local checkpoint; clear errors if missing or unreadable."""
    if not path.is_file():
        raise TextEncoderMissing(
            f"The open_clip checkpoint {path} (text.pretrained) does not exist (looked at "
            f"{path.resolve()}). Pass the path of a CLIP checkpoint on this machine (a state dict "
            f".pt/.bin/.safetensors or OpenAI's ViT-B-32.pt), a tag such as 'openai' whose weights are "
            f"already in open_clip's cache, or null for random weights.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path)), False
        if _is_torchscript(path):
            return torch.jit.load(str(path), map_location="cpu").state_dict(), True
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TextEncoderCorrupt(
            f"The open_clip checkpoint {path} exists but could not be read as a checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); it may be "
            f"truncated or not a PyTorch file. Download it again, or pass another checkpoint path.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise TextEncoderCorrupt(f"The open_clip checkpoint {path} holds no state dict of tensors.")
    return state, False


def text_state_dict(state: dict) -> dict:
    """The text-tower entries of a CLIP or CustomTextCLIP (text.*) state dict, in CLIP key names."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("text.") for k in state):
        state = {k[5:]: v for k, v in state.items() if k.startswith("text.")}
    return {k: v for k, v in state.items() if k.startswith(_TEXT_KEYS)}


def is_checkpoint_path(pretrained: str) -> bool:
    """text.pretrained names a file (else an open_clip tag)."""
    return Path(pretrained).expanduser().exists() or _looks_like_path(pretrained)


def pretrained_cfg(arch: str, tag: str) -> dict:
    """open_clip's config of a pretrained tag of `arch` (its download source); SpecError naming the
    architecture's tags when there is no such tag. The one check of a CLIP tag (preflight, build)."""
    import open_clip

    from ...errors import SpecError
    pcfg = open_clip.get_pretrained_cfg(arch, tag)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise SpecError(f"text.pretrained: '{tag}' is neither a file nor a pretrained tag of {arch} "
                        f"(tags: {', '.join(tags) or 'none'}).")
    return pcfg


def resolve_pretrained(arch: str, pretrained: str) -> tuple[Path, bool]:
    """(checkpoint path, needs QuickGELU) for a local path or an open_clip tag (cache only)."""
    import open_clip

    if is_checkpoint_path(pretrained):
        return Path(pretrained).expanduser(), False
    pcfg = pretrained_cfg(arch, pretrained)
    try:
        target = open_clip.download_pretrained(pcfg)
    except Exception as exc:
        target, why = "", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    else:
        why = "open_clip returned no file"
    if not target or not Path(target).is_file():
        raise TextEncoderMissing(
            f"The CLIP weights {arch}/{pretrained} could not be fetched ({why}); this machine may be "
            f"offline. open_clip caches them in the Hugging Face cache {hf_cache_dir()} "
            f"(repo {pcfg.get('hf_hub', '?')}) or, for URL downloads, in {os.path.expanduser('~/.cache/clip')}. "
            f"Run `python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{pretrained}')\"` "
            f"on a machine with internet and copy that cache here, or set text.pretrained to the path "
            f"of a local checkpoint file.")
    return Path(target), bool(pcfg.get("quick_gelu", False))


def hub_offline() -> Optional[str]:
    """The environment variable that forbids Hugging Face downloads (open_clip's downloader), if set."""
    for name in OFFLINE_ENV:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def _hf_names(pcfg: dict) -> tuple[str, list[str]]:
    """(repo id, candidate file names) of a pretrained config's hf_hub entry, as
    open_clip.pretrained.download_pretrained_from_hf looks for them (safetensors first)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    repo, filename = os.path.split(pcfg["hf_hub"])
    filename = filename or HF_WEIGHTS_NAME
    names = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []
    if filename.endswith((".bin", ".pt", ".pth")):
        names.append(filename.rsplit(".", 1)[0] + ".safetensors")
    return repo, [*names, filename]


def clip_weights_cached(pcfg: dict) -> Optional[str]:
    """The cached checkpoint of a pretrained config (HF cache, or ~/.cache/clip for URL downloads), or None."""
    if pcfg.get("file"):
        return pcfg["file"] if Path(pcfg["file"]).is_file() else None
    if pcfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        repo, names = _hf_names(pcfg)
        for name in names:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str):
                return hit
    if pcfg.get("url"):
        local = Path("~/.cache/clip").expanduser() / os.path.basename(pcfg["url"])
        if local.is_file():
            return str(local)
    return None


def clip_weights_url(pcfg: dict) -> Optional[str]:
    """Where open_clip would download them from (the Hugging Face hub when the config names a repo)."""
    if pcfg.get("hf_hub"):
        repo, names = _hf_names(pcfg)
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
        return f"{endpoint}/{repo}/resolve/main/{names[-1]}"
    return pcfg.get("url") or None


def require(cfg: TextConfig, probe) -> None:
    """The weights text.pretrained names: a checkpoint file here, or a tag whose weights are cached or
    downloadable now (`probe(url)`: None, or why not); None (random weights) needs nothing."""
    p = cfg.pretrained
    if not p:
        return
    if is_checkpoint_path(p):
        if not Path(p).expanduser().is_file():
            read_checkpoint(Path(p).expanduser())                            # raises TextEncoderMissing with the fix
        return
    pcfg = pretrained_cfg(cfg.model, p)
    if clip_weights_cached(pcfg):
        return
    url, offline = clip_weights_url(pcfg), hub_offline()
    failed = probe(url) if url and not (offline and pcfg.get("hf_hub")) else None
    why = f"{offline} is set, so nothing is downloaded" if offline and pcfg.get("hf_hub") else (
        f"{url} gave {failed}" if failed else None)
    if why:
        raise TextEncoderMissing(
            f"The CLIP weights {cfg.model}/{p} (text.pretrained) are not in the Hugging Face cache {hf_cache_dir()} "
            f"(repo {pcfg.get('hf_hub', '?').rstrip('/')}) nor in {Path('~/.cache/clip').expanduser()}, and cannot be "
            f"downloaded now: {why}. Run `python -c \"import open_clip; open_clip.create_model('{cfg.model}', "
            f"pretrained='{p}')\"` on a machine with internet and copy that cache here, or set text.pretrained "
            f"to the path of a local checkpoint file.")


def identity(cfg: TextConfig, digest) -> dict:
    """A digest of the checkpoint file where text.pretrained is one; else how the weights were had."""
    p = cfg.pretrained
    if p and Path(p).expanduser().is_file():
        return digest([Path(p).expanduser()], None)
    return {"weights": "random init (seeded)" if not p else "by name (no local file)"}


# ----------------------------------------------------------------------------- learner


class OpenClipPromptLearner(PromptLearner):
    """CoOp prompts through an open_clip text tower, truncated after the last EOT of the batch."""

    def __init__(self, cfg: TextConfig, class_names: list[str], truncate: bool = True,
                 shared_prefix: bool = True):
        super().__init__(cfg, class_names)
        import open_clip

        if cfg.model == "minilm":
            raise ValueError("text.model: 'minilm' is a Hugging Face model; with text.encoder: open_clip "
                             "set text.model to an open_clip architecture such as ViT-B-32")
        model_cfg = model_config(cfg.model)
        state, quick_gelu = None, False
        if cfg.pretrained:
            path, quick_gelu = resolve_pretrained(cfg.model, cfg.pretrained)
            state, is_openai_jit = read_checkpoint(path)
            quick_gelu = quick_gelu or is_openai_jit  # OpenAI's weights were trained with QuickGELU
        self.encoder = ClipTextTower(model_cfg, quick_gelu=quick_gelu)
        if state is not None:
            text_state = text_state_dict(state)
            try:
                self.encoder.load_state_dict(text_state, strict=True)
            except RuntimeError as exc:
                raise ValueError(
                    f"text.pretrained {cfg.pretrained} does not fit the text tower of {cfg.model}: "
                    f"{str(exc).splitlines()[0]} ({len(text_state)} text entries found). Check text.model."
                ) from None
        self.encoder.float()
        self.dim = self.encoder.output_dim

        text_cfg = model_cfg["text_cfg"]
        if text_cfg.get("hf_tokenizer_name"):
            raise NotImplementedError("open_clip models with a Hugging Face tokenizer are not supported")
        registered = cfg.model not in BUILTIN_CONFIGS and not cfg.model.endswith(".json")
        tok = (open_clip.get_tokenizer(cfg.model) if registered
               else open_clip.SimpleTokenizer(context_length=self.encoder.context_length))
        if not isinstance(tok, open_clip.SimpleTokenizer):
            raise NotImplementedError(f"text.model {cfg.model}: only CLIP's BPE tokenizer is supported")
        # A tower without a causal mask lets every token see the padding: keep the full length there.
        pad_to = None if (truncate and self.encoder.causal and self.encoder.pool_type != "last") \
            else self.encoder.context_length
        self.truncated = pad_to is None
        ctx_init = tok.encode(cfg.ctx_init) if cfg.ctx_init else None
        self._init_prompts([tok.encode(clean_class_name(n)) for n in class_names], [tok.sot_token_id],
                           tok.encode("."), [tok.eot_token_id], placeholder=tok.encode("X")[0], pad_id=0,
                           max_length=min(cfg.max_length, self.encoder.context_length),
                           ctx_init_ids=ctx_init, pad_to=pad_to)
        # Shared-prefix hook (prefix.py): P when every prompt starts with the same [SOS] +
        # context (exact on a causal tower), None for the plain path. shared_prefix=False: benchmarks.
        self.prefix_len = shared_prefix_len(self) if shared_prefix else None

    def forward(self) -> TextFeatures:
        if self.prefix_len is not None:
            return shared_prefix_forward(self, self.prefix_len)
        return super().forward()

    def embed_tokens(self, ids: Tensor) -> Tensor:
        return self.encoder.token_embedding(ids)

    def encode(self, embeds: Tensor, lengths: Tensor, eot_pos: Tensor, need_tokens: bool
               ) -> tuple[Tensor, Optional[Tensor]]:
        return self.encoder(embeds, eot_pos, need_tokens)
