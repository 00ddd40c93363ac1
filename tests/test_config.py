"""YAML configs: numbers in any notation, overrides, and errors that say what is wrong."""

import pytest

from medprompt.config import load_config, read_yaml
from medprompt.errors import MedpromptError


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "override.yaml"
    path.write_text("training:\n  lr: 1e-3\n")
    assert load_config("pretrain_backbone", path)["training"]["lr"] == pytest.approx(1e-3)
    config = load_config("pretrain_backbone", overrides=["training.lr=2e-4", "training.steps=12", "seed=-3E1"])
    assert config["training"]["lr"] == pytest.approx(2e-4)
    assert config["training"]["steps"] == 12 and config["seed"] == pytest.approx(-30.0)
    assert load_config("pretrain_backbone", overrides=["init=1e"])["init"] == "1e"


def test_unknown_override_key_names_the_known_keys():
    with pytest.raises(MedpromptError, match="unknown key 'training.lrr'.*'lr'"):
        load_config("pretrain_backbone", overrides=["training.lrr=1e-3"])
    with pytest.raises(MedpromptError, match="override 'seed=\\[1,': the value '\\[1,' is not valid YAML"):
        load_config("pretrain_backbone", overrides=["seed=[1,"])


def test_non_mapping_yaml_names_the_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(MedpromptError, match="list.yaml: a config must be a YAML mapping"):
        read_yaml(path)
