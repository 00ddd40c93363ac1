"""YAML configs: numbers in any notation, overrides, and errors that say what is wrong."""

import pytest

from medprompt.common.config import load_config, read_yaml
from medprompt.common.errors import MedpromptError


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "override.yaml"
    path.write_text("lr: 1e-3\nloss:\n  w_size: 2E-2\n")
    config = load_config("train", path)
    assert config["lr"] == pytest.approx(1e-3) and config["loss"]["w_size"] == pytest.approx(2e-2)
    config = load_config("train", overrides=["lr=2e-4", "epochs=12", "seed=-3E1"])
    assert config["lr"] == pytest.approx(2e-4)
    assert config["epochs"] == 12 and config["seed"] == pytest.approx(-30.0)
    assert load_config("train", overrides=["method=1e"])["method"] == "1e"


def test_unknown_override_key_names_the_known_keys():
    with pytest.raises(MedpromptError, match="unknown key 'loss.tt'.*'t'"):
        load_config("train", overrides=["loss.tt=5"])
    with pytest.raises(MedpromptError, match="override 'seed=\\[1,': the value '\\[1,' is not valid YAML"):
        load_config("train", overrides=["seed=[1,"])


def test_non_mapping_yaml_names_the_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(MedpromptError, match="list.yaml: a config must be a YAML mapping"):
        read_yaml(path)


def test_config_option_takes_a_bundled_name():
    paper = load_config("train", "paper")
    assert paper["prompt_offset"] == "none" and paper["selection"]["split"] is None
    assert paper["lr"] == load_config("train")["lr"]  # only what differs is overridden
    with pytest.raises(MedpromptError, match="nosuch: no such config file, and no bundled config 'nosuch'"):
        load_config("train", "nosuch")


def test_encoder_prompts_config_is_ptsam_with_prompts_in_the_encoder_and_the_method_defaults():
    from medprompt.training.recipe import load_train_config

    config = load_train_config(path="encoder_prompts")
    assert (config["method"], config["supervision"], config["epochs"]) == ("ptsam", "pseudo_masks", 30)
    assert config["ptsam"] == {"tokens": 8, "encoder_vpt": 8}  # the method's file, then the recipe's
    assert config["refine"] == load_train_config()["refine"]
