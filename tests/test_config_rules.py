"""Config values checked against their rules before any work: the key, the value and what is allowed."""

import pytest

from medprompt.common.config import load_config
from medprompt.common.config_rules import Rule, check_config
from medprompt.common.errors import MedpromptError
from medprompt.methods import available_methods, method_class
from medprompt.training.recipe import TRAIN_RULES, load_train_config
from preprocessing.pipeline import PREPROCESS_RULES


def test_rules_accept_and_refuse_by_hand():
    assert Rule("int", 1).accepts(3) and not Rule("int", 1).accepts(0) and not Rule("int", 1).accepts(2.5)
    assert not Rule("int", 1).accepts(True) and not Rule("int", 1).accepts("4")
    assert Rule("number", 0, 1).accepts(0.5) and not Rule("number", 0, 1).accepts(float("nan"))
    assert Rule("int", 1, nullable=True).accepts(None) and not Rule("int", 1).accepts(None)
    assert Rule("numbers", 0, 100, length=2, increasing=True).accepts([0.5, 99.5])
    assert not Rule("numbers", 0, 100, length=2, increasing=True).accepts([99.5, 0.5])
    assert not Rule("numbers", 0, 100, length=2).accepts(5)
    assert Rule("ints", 1, increasing=True).accepts([4, 8]) and not Rule("ints", 1).accepts([4, 8.5])
    assert not Rule("ints", 1).accepts([]) and not Rule("ints", 1).accepts([0, 4])
    assert Rule("ints", 1).describe() == "a list of some whole numbers >= 1"
    assert Rule("choice", choices=("a", "b")).accepts("b") and not Rule("choice", choices=("a", "b")).accepts("c")
    assert Rule("number", 0, 1).describe() == "a number in [0, 1]"
    assert Rule("int", 1, nullable=True).describe() == "null or a whole number >= 1"


def test_bundled_configs_follow_their_rules():
    for name in ("train", "paper", "encoder_prompts"):
        config = load_train_config(path=name if name != "train" else None)
        check_config(config, {**TRAIN_RULES, **method_class(config["method"]).rules})
    for name in available_methods():
        cls = method_class(name)
        config = load_train_config(name)
        check_config(config, {**TRAIN_RULES, **cls.rules})
        cls.check_options(config.get(name) or {})
    for name in ("acdc", "camus", "hc18"):
        check_config(load_config(name), PREPROCESS_RULES)


@pytest.mark.parametrize("override, message", [
    ("epochs=abc", "config key epochs: 'abc' is not allowed; it takes a whole number >= 1 (--set epochs=...)"),
    ("batch_size=0", "config key batch_size: 0 is not allowed"),
    ("loss.size_bounds=0.5", "config key loss.size_bounds: 0.5 is not allowed; it takes a list of 2 numbers in [0, 1]"),
    ("selection.split=tset", "config key selection.split: 'tset' is not allowed; it takes null or one of"),
    ("refine.enabled=maybe", "config key refine.enabled: 'maybe' is not allowed; it takes true or false"),
])
def test_train_overrides_outside_their_rules_are_named(override, message):
    with pytest.raises(MedpromptError) as info:
        check_config(load_config("train", overrides=[override]), TRAIN_RULES)
    assert message in str(info.value)


@pytest.mark.parametrize("override, key", [
    ("intensity.percentiles=[0.5, 150]", "intensity.percentiles"),
    ("geometry.size=-4", "geometry.size"),
    ("geometry.target_spacing=[0, 1]", "geometry.target_spacing"),
    ("geometry.image_interpolation=bicubic", "geometry.image_interpolation"),
])
def test_preprocess_overrides_outside_their_rules_are_named(override, key):
    with pytest.raises(MedpromptError, match=f"config key {key}:"):
        check_config(load_config("acdc", overrides=[override]), PREPROCESS_RULES)


def test_the_recipe_is_typed_section_by_section():
    from medprompt.cli.main import build_parser
    from medprompt.training.box_losses import BoxLossConfig
    from medprompt.training.collapse import CollapseConfig
    from medprompt.training.recipe import TrainConfig
    from medprompt.training.selection import SelectionConfig
    from medprompt.training.supervision import SUPERVISIONS, MaskSupervision

    recipe = TrainConfig.from_mapping(load_train_config(overrides=["collapse.patience=3", "loss.size_bounds=[0.2, 0.8]",
                                                                   "selection.split=null", "supervision=masks"]))
    assert recipe.collapse == CollapseConfig(empty_below=0.05, full_above=0.9, patience=3, max_recoveries=3)
    assert recipe.loss == BoxLossConfig(size_bounds=(0.2, 0.8)) and recipe.selection == SelectionConfig(split=None)
    assert isinstance(recipe.supervision_strategy(), MaskSupervision) and recipe.values["collapse"]["patience"] == 3
    # every section key can be set, under its dotted name, and the command line offers every supervision
    assert {"refine.box_margin", "augment.rotate", "selection.after", "collapse.patience", "loss.w_size"} <= set(TRAIN_RULES)
    train_verb = build_parser()._subparsers._group_actions[0].choices["train"]
    choices = next(a.choices for a in train_verb._actions if a.dest == "supervision")
    assert sorted(choices) == sorted(SUPERVISIONS)
    with pytest.raises(MedpromptError, match="config key collapse.patience: 0 is not allowed"):
        TrainConfig.from_mapping(load_train_config(overrides=["collapse.patience=0"]))
