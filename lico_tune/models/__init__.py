"""Image backbones and the text side (prompt learners over Hugging Face or open_clip encoders)."""
from .backbones import ImageClassifier, build_classifier
from .text import PromptLearner, TextEncoderMissing, TextFeatures, build_prompt_learner

__all__ = ["build_classifier", "ImageClassifier", "build_prompt_learner", "PromptLearner", "TextFeatures",
           "TextEncoderMissing"]
