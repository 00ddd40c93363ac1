"""The conv/FC prompt module: exact architecture and its offset prompts."""

import torch

from medprompt.methods.prompt_module import ConvFCPromptModule
from tiny_backbone import build_tiny_backbone


def test_parameter_count_is_the_papers():
    module = ConvFCPromptModule()
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == 2_433_984


def test_output_shapes_and_dense_is_non_negative_without_offset():
    module = ConvFCPromptModule()
    sparse, dense = module(torch.randn(3, 256, 64, 64))
    assert sparse.shape == (3, 2, 256)
    assert dense.shape == (3, 256, 64, 64)
    assert (dense >= 0).all()  # ReLU after the dense 3x3 convolution


def test_offset_is_the_backbones_whole_image_box_prompt_and_adds_no_parameter():
    backbone = build_tiny_backbone(seed=0).freeze()
    offset = backbone.whole_image_prompt()
    module = ConvFCPromptModule(offset=offset)
    assert sum(p.numel() for p in module.parameters()) == 2_433_984
    box_sparse, box_dense = backbone.embed_boxes(torch.tensor([[0.0, 0.0, 255.0, 255.0]]), (256, 256))
    assert torch.allclose(module.offset_sparse, box_sparse) and torch.allclose(module.offset_dense, box_dense[:, :, :1, :1])
    embeddings = torch.randn(2, 256, 64, 64)
    plain = ConvFCPromptModule()
    plain.load_state_dict({**module.state_dict(), "offset_sparse": torch.zeros(1, 2, 256),
                           "offset_dense": torch.zeros(1, 256, 1, 1)})
    (s1, d1), (s0, d0) = module(embeddings), plain(embeddings)
    assert torch.allclose(s1 - s0, offset[0].expand_as(s0), atol=1e-6)
    assert torch.allclose(d1 - d0, offset[1].expand_as(d0), atol=1e-6)


def test_first_prediction_is_the_backbones_whole_image_answer_even_for_small_embeddings():
    """LiteMedSAM's embeddings have std ~0.1: the module's own outputs are then tiny, so without the offset
    the decoder reads "no prompt"; with it, the first logits are the backbone's answer to the whole-image box."""
    backbone = build_tiny_backbone(seed=0).freeze()
    torch.manual_seed(1)
    embeddings = 0.1 * torch.randn(2, 256, 64, 64)
    module = ConvFCPromptModule(offset=backbone.whole_image_prompt())
    with torch.no_grad():
        learned = backbone.decode(embeddings, *module(embeddings))
        whole_image = backbone.prompt(embeddings, torch.tensor([[0.0, 0.0, 255.0, 255.0]] * 2), (256, 256))
        no_offset = backbone.decode(embeddings, *ConvFCPromptModule()(embeddings))
    assert (learned - whole_image).abs().max() < 0.1 * whole_image.abs().max()
    assert (no_offset - whole_image).abs().max() > 0.1 * whole_image.abs().max()
