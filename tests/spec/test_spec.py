"""Spec models: YAML loading, field-path errors, overrides, schema."""
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from lico_tune.spec import (SpecError, TrialConfig, apply_overrides, field_paths, json_schema, load_spec,
                            validate_spec)


def write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_quickstart_spec_is_valid():
    spec = load_spec("search_spaces/quickstart.yaml")
    assert spec.base.data.name == "fashion_mnist"
    assert spec.base.text.encoder == "hf"
    assert set(spec.ablation) == {"ce", "lico"}


def test_defaults_are_the_paper_defaults():
    cfg = TrialConfig()
    assert (cfg.lico.alpha, cfg.lico.beta, cfg.text.n_ctx, cfg.lico.ot.epsilon) == (10.0, 1.0, 12, 0.1)
    assert cfg.lico.ot.gradient == "envelope" and cfg.lico.mm.sign == "negative"
    assert cfg.text.features == "rolled" and not cfg.text.finetune


def test_misspelled_field_names_its_path_and_suggests(tmp_path):
    path = write(tmp_path, """
        base:
          lico: {ot: {epsilonn: 0.1}}
    """)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert "base.lico.ot.epsilonn" in msg and "did you mean 'epsilon'" in msg


def test_wrong_type_names_path_and_value(tmp_path):
    path = write(tmp_path, "base: {train: {epochs: many}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert "base.train.epochs" in str(err.value) and "'many'" in str(err.value)


def test_every_error_is_listed(tmp_path):
    path = write(tmp_path, "base: {train: {epochs: 0, lr: -1}, model: {backbone: vgg}}\n")
    msg = str(pytest.raises(SpecError, load_spec, path).value)
    for field in ("base.train.epochs", "base.train.lr", "base.model.backbone"):
        assert field in msg


def test_search_path_that_names_no_field(tmp_path):
    path = write(tmp_path, "search: {space: {lico.ot.epsilonn: {loguniform: [0.01, 1.0]}}}\n")
    msg = str(pytest.raises(SpecError, load_spec, path).value)
    assert "search.space: 'lico.ot.epsilonn' is not a field; did you mean 'lico.ot.epsilon'?" in msg


def test_distribution_arity_is_checked(tmp_path):
    path = write(tmp_path, "search: {space: {lico.alpha: {uniform: [1]}}}\n")
    assert "uniform takes [low, high]" in str(pytest.raises(SpecError, load_spec, path).value)


def test_ablation_arm_values_are_validated(tmp_path):
    path = write(tmp_path, "ablation: {bad: {lico.beta: -1}}\n")
    msg = str(pytest.raises(SpecError, load_spec, path).value)
    assert "ablation arm 'bad'" in msg and "lico.beta" in msg
    path = write(tmp_path, "ablation: {bad: {lico.betta: 0}}\n")
    assert "did you mean 'lico.beta'" in str(pytest.raises(SpecError, load_spec, path).value)


def test_overrides_apply_to_base_and_parse_yaml(tmp_path):
    path = write(tmp_path, "name: x\n")
    spec = load_spec(path, ["lico.ot.epsilon=0.05", "train.epochs=1", "eval.cams=[gradcam, rise]",
                            "name=renamed"])
    assert spec.base.lico.ot.epsilon == 0.05 and spec.base.train.epochs == 1
    assert spec.base.eval.cams == ["gradcam", "rise"] and spec.name == "renamed"
    with pytest.raises(SpecError, match="PATH=VALUE"):
        load_spec(path, ["train.epochs"])
    msg = str(pytest.raises(SpecError, load_spec, path, ["base.train.epoks=1"]).value)
    assert "base.train.epoks" in msg and "did you mean 'epochs'" in msg


def test_overrides_do_not_mutate_input():
    tree = {"base": {"train": {"epochs": 3}}}
    out = apply_overrides(tree, ["train.epochs=5"], prefix="base.")
    assert tree["base"]["train"]["epochs"] == 3 and out["base"]["train"]["epochs"] == 5


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    assert "not valid YAML" in str(pytest.raises(SpecError, load_spec, path).value)


def test_missing_and_non_mapping_files(tmp_path):
    assert "no such spec file" in str(pytest.raises(SpecError, load_spec, tmp_path / "nope.yaml").value)
    assert "must be a YAML mapping" in str(pytest.raises(SpecError, load_spec, write(tmp_path, "- 1\n")).value)


def test_schema_is_json_schema_with_descriptions():
    schema = json_schema()
    json.dumps(schema)
    assert schema["type"] == "object" and "base" in schema["properties"]
    ot = schema["$defs"]["OTConfig"]["properties"]
    assert "description" in ot["epsilon"] and ot["points"]["enum"] == ["channels", "spatial"]
    assert schema["$defs"]["TrialConfig"]["additionalProperties"] is False


def test_field_paths_cover_nested_sections():
    paths = field_paths()
    assert "lico.ot.epsilon" in paths and "text.n_ctx" in paths and "data.name" in paths
    assert "lico" not in paths  # sections are not leaves


def test_round_trip_through_yaml():
    spec = validate_spec({"name": "rt", "base": {"lico": {"alpha": 3}}})
    again = validate_spec(yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json"))))
    assert again == spec


def test_the_study_specs_paper_scale_recipe_validates(capsys):
    """The `--set` recipe in study_offline.yaml's header is a promise: it must give a valid spec."""
    import shlex
    from lico_tune.cli import main
    path = Path(__file__).resolve().parents[2] / "search_spaces" / "study_offline.yaml"
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "--name study-paper-scale" in line)
    recipe = []
    for line in lines[start:]:
        recipe.append(line.lstrip("#").strip().rstrip("\\"))
        if not line.rstrip().endswith("\\"):
            break
    words = shlex.split(" ".join(recipe))
    sets = [w for i, w in enumerate(words) if i and words[i - 1] == "--set"]
    assert len(sets) >= 20 and "data.augment=true" in sets
    assert main(["validate", str(path), *[a for s in sets for a in ("--set", s)]]) == 0, capsys.readouterr().err
