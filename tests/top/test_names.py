"""One home for each name list (lico_tune/names.py; the datasets' is data/'s own, data/names.py): the
spec's types are built from it, and every registry implements exactly its names, no more and no fewer."""
import typing

from lico_tune import names
from lico_tune.data import names as data_names
from lico_tune.data.registry import REGISTRY
from lico_tune.models.backbones import _BACKBONES
from lico_tune.saliency import METHODS
from lico_tune.saliency.cam import CAM_METHODS
from lico_tune.spec import DataConfig, EvalConfig, ModelConfig


def _choices(model, field: str) -> tuple:
    annotation = model.model_fields[field].annotation
    if typing.get_origin(annotation) is list:  # list[Literal[...]]
        annotation = typing.get_args(annotation)[0]
    return typing.get_args(annotation)


def test_spec_types_are_the_name_lists():
    assert _choices(DataConfig, "name") == data_names.DATASETS
    assert _choices(ModelConfig, "backbone") == names.BACKBONES
    assert _choices(EvalConfig, "cams") == names.SALIENCY_METHODS


def test_registries_implement_exactly_the_names():
    assert set(REGISTRY) == set(data_names.DATASETS)
    assert set(_BACKBONES) == set(names.BACKBONES)
    assert CAM_METHODS == names.CAM_METHODS and METHODS == names.SALIENCY_METHODS


def test_explain_offers_every_saliency_method():
    from lico_tune.cli import build_parser
    explain = build_parser()._subparsers._group_actions[0].choices["explain"]
    method = next(a for a in explain._actions if a.dest == "method")
    assert tuple(method.choices) == names.SALIENCY_METHODS
