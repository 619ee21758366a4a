"""The speed paths `vidpress bench` led to, checked on the CPU.

- received attention in two "flash" passes: the algebra (normalisers, the -lse bias folded into
  two extra head dimensions as a high and a low half-precision part, padding) with the flash
  kernel's log-sum-exp replaced by an explicit one;
- the LLaVA-OV adapter's channels-last pooling gives the stock features bitwise;
- the gate's host walk and strided kNN groups are covered by tests/test_functional_core.py.
"""

from __future__ import annotations

import pytest
import torch

from vidpress.functional import attention


def _explicit_lse(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    logits = (q.float() @ k.float().transpose(-1, -2)) * scale
    return torch.logsumexp(logits, dim=-1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("frames", "heads", "length", "dim"), [(3, 2, 49, 72), (5, 4, 16, 80)])
def test_two_pass_received_attention_matches_the_softmax_rows(
    monkeypatch, dtype, frames, heads, length, dim
):
    monkeypatch.setattr(attention, "_flash_lse", _explicit_lse)
    monkeypatch.setattr(attention, "FLASH_CHUNK_ELEMENTS", 2 * heads * length * 80)  # 2 frames
    g = torch.Generator().manual_seed(frames)
    q = (3 * torch.randn(frames, heads, length, dim, generator=g)).to(dtype)
    k = (3 * torch.randn(frames, heads, length, dim, generator=g)).to(dtype)
    fast = attention._received_attention_flash(q, k)
    reference = attention._received_attention_chunked(q, k)
    torch.testing.assert_close(fast, reference, rtol=5e-4, atol=1e-6)
    assert torch.allclose(fast.sum(dim=1), torch.ones(frames), atol=1e-3)  # a distribution


def test_received_attention_keeps_the_explicit_path_on_a_cpu():
    q = torch.randn(2, 2, 9, 8, dtype=torch.bfloat16)
    assert not attention._flash_usable(q, q)
    torch.testing.assert_close(
        attention.received_attention(q, q), attention._received_attention_chunked(q, q)
    )


def test_llava_onevision_adapter_features_equal_the_stock_path():
    from vidpress.adapters.registry import get_adapter
    from vidpress.metrics.architectures import build_architecture, video_prompt
    from vidpress.metrics.latency import video_features

    model = build_architecture("llava-onevision-tiny")
    inputs = video_prompt(model, "llava_onevision", 3, 56)
    adapter = get_adapter(model)
    cfg = model.config
    with torch.no_grad():
        ours = adapter._video_features(
            inputs["pixel_values_videos"],
            cfg.vision_feature_layer,
            cfg.vision_feature_select_strategy,
        )
        stock = video_features(model, inputs).pooler_output
    assert torch.equal(ours, stock)


def test_explicit_scores_is_scoped_and_restored():
    assert not attention._EXPLICIT_ONLY.get()
    with pytest.raises(RuntimeError), attention.explicit_scores():
        assert attention._EXPLICIT_ONLY.get()
        raise RuntimeError("leaves the block")
    assert not attention._EXPLICIT_ONLY.get()
