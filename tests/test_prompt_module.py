"""The conv/FC prompt module: exact architecture and registry."""

import pytest
import torch

from medprompt.errors import MedpromptError
from medprompt.prompt_learners import PROMPT_LEARNERS, build_prompt_learner


def test_parameter_count_is_the_papers():
    module = build_prompt_learner("conv_fc")
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == 2_433_984


def test_output_shapes_and_dense_is_non_negative():
    module = build_prompt_learner("conv_fc")
    sparse, dense = module(torch.randn(3, 256, 64, 64))
    assert sparse.shape == (3, 2, 256)
    assert dense.shape == (3, 256, 64, 64)
    assert (dense >= 0).all()  # ReLU after the dense 3x3 convolution


def test_registry_lists_and_rejects():
    assert "conv_fc" in PROMPT_LEARNERS
    with pytest.raises(MedpromptError, match="unknown prompt learner 'nope'"):
        build_prompt_learner("nope")
