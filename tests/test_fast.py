"""vidpress.fast: generation at static shapes gives generate()'s tokens under the same press.

On the CPU the fast path runs eagerly (its static cache, masks, positions and the two prefill
segments around layer K); the CUDA-graph replays of the same code are checked on a GPU.
"""

from __future__ import annotations

import copy
import dataclasses
import sys

import pytest
import torch

from tiny_models import (
    SPECIAL,
    TINY_FAMILIES,
    family_batch,
    family_model,
    family_prompts,
    greedy,
    tiny_press,
)
from vidpress import functional as F
from vidpress.adapters.registry import get_adapter
from vidpress.engine.fast import FastGenerator
from vidpress.engine.greedy import after_eos
from vidpress.engine.inner import merge_rows

FAMILIES = tuple(TINY_FAMILIES)
PRESS_NAMES = ("unified", "fastv", "holitom", "visionzip", "uniform")
STEPS = 12


def _suppressed(model) -> list[int]:
    return list(range(SPECIAL, model.config.text_config.vocab_size))


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param, family_model(request.param)


@pytest.mark.parametrize("name", PRESS_NAMES)
@pytest.mark.parametrize("size", [1, 3])
def test_same_tokens_as_generate(family, name, size):
    family_name, model = family
    inputs = family_batch(family_name, family_prompts(family_name)[:size])
    with tiny_press(name)(model) as run:
        expected, _, _ = greedy(model, inputs, steps=STEPS)
        fast = FastGenerator(run, check_every=5)
        out = fast.generate(inputs, STEPS, ignore_eos=True, suppress_tokens=_suppressed(model))
        again = fast.generate(inputs, STEPS, ignore_eos=True, suppress_tokens=_suppressed(model))
    assert torch.equal(out.tokens, expected)
    assert torch.equal(again.tokens, expected)  # the static state of a seen shape is reused
    assert len(fast._shapes) == 1
    assert len(run.stats) == 3  # generate's prefill and the two fast calls
    assert run.stats[-1].kept_outer == run.stats[0].kept_outer
    assert run.stats[-1].kept_inner == run.stats[0].kept_inner


@pytest.mark.parametrize("ending", ["one sample", "every sample"])
def test_eos_stops_and_pads_like_generate(family, ending):
    family_name, model = family
    inputs = family_batch(family_name, family_prompts(family_name))
    with tiny_press("unified")(model) as run:
        free, _, _ = greedy(model, inputs, steps=STEPS)
        # EOS ids taken from the free-running tokens: sample 0 ends at step 3 (or every
        # sample ends early, so decoding stops before STEPS)
        eos = [int(free[0, 3])] if ending == "one sample" else [int(t[2]) for t in free]
        expected = model.generate(
            **inputs,
            max_new_tokens=STEPS,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=0,
            suppress_tokens=_suppressed(model),
        )[:, inputs["input_ids"].shape[1] :]
        out = FastGenerator(run, check_every=2).generate(
            inputs, STEPS, eos_token_id=eos, pad_token_id=0, suppress_tokens=_suppressed(model)
        )
    assert torch.equal(out.tokens, expected)
    assert (out.tokens[0, 4:] == 0).all()
    assert out.tokens.shape[1] == (STEPS if ending == "one sample" else 3)
    assert out.first_token_s <= out.seconds


def test_after_eos_pads_after_the_first_eos_and_stops_when_all_ended():
    tokens = torch.tensor([[5, 2, 6, 7, 2], [5, 6, 2, 3, 3]])
    out = after_eos(tokens, torch.tensor([2]), pad=0)
    assert out.tolist() == [[5, 2, 0], [5, 6, 2]]
    open_ended = torch.tensor([[5, 2, 6], [5, 6, 3]])
    assert after_eos(open_ended, torch.tensor([2]), pad=None).tolist() == [[5, 2, 2], [5, 6, 3]]


def test_prompts_of_other_lengths_get_their_own_static_state():
    model = family_model("llava_onevision")
    prompts = family_prompts("llava_onevision")
    with tiny_press("unified")(model) as run:
        fast = FastGenerator(run)
        for prompt in prompts:
            inputs = family_batch("llava_onevision", [prompt])
            expected, _, _ = greedy(model, inputs, steps=6)
            out = fast.generate(inputs, 6, ignore_eos=True, suppress_tokens=_suppressed(model))
            assert torch.equal(out.tokens, expected)
    assert len(fast._shapes) == len({len(p["ids"]) for p in prompts})


def test_bad_arguments_are_named():
    model = family_model("llava_onevision")
    inputs = family_batch("llava_onevision", family_prompts("llava_onevision")[:1])
    with pytest.raises(TypeError, match="run must be"):
        FastGenerator(model)
    with tiny_press("unified")(model) as run:
        with pytest.raises(ValueError, match="check_every"):
            FastGenerator(run, check_every=0)
        with pytest.raises(ValueError, match="cuda_graphs=True"):
            FastGenerator(run, cuda_graphs=True)
        fast = FastGenerator(run)
        for bad in (0, 2.5, True):
            with pytest.raises(ValueError, match="max_new_tokens"):
                fast.generate(inputs, bad)
        with pytest.raises(ValueError, match="suppress_tokens"):
            fast.generate(inputs, 2, suppress_tokens=[10**6])
        text_only = {k: v for k, v in inputs.items() if k != "pixel_values_videos"}
        with pytest.raises(ValueError, match="video prompt"):
            fast.generate(text_only, 2)


def test_other_attention_implementations_are_refused():
    model = family_model("llava_onevision")
    model.config.text_config._attn_implementation = "flash_attention_2"
    with tiny_press("unified")(model) as run, pytest.raises(ValueError, match="sdpa, eager"):
        FastGenerator(run)


def test_eager_attention_gives_the_same_tokens():
    model = family_model("llava_onevision", attn="eager")
    inputs = family_batch("llava_onevision", family_prompts("llava_onevision"))
    with tiny_press("unified")(model) as run:
        expected, _, _ = greedy(model, inputs, steps=8)
        out = FastGenerator(run).generate(
            inputs, 8, ignore_eos=True, suppress_tokens=_suppressed(model)
        )
    assert torch.equal(out.tokens, expected)


@pytest.mark.gpu
@pytest.mark.parametrize("family_name", FAMILIES)
@pytest.mark.parametrize("name", ["unified", "holitom", "fastv", "visionzip"])
def test_cuda_graphs_give_the_eager_tokens(family_name, name):
    model = family_model(family_name).cuda()
    inputs = family_batch(family_name, family_prompts(family_name))
    inputs = {k: v.cuda() for k, v in inputs.items()}
    with tiny_press(name)(model) as run:
        expected, _, _ = greedy(model, inputs, steps=STEPS)
        graphs = FastGenerator(run, cuda_graphs=True, check_every=4)
        kwargs = dict(ignore_eos=True, suppress_tokens=_suppressed(model))
        first = graphs.generate(inputs, STEPS, **kwargs)  # captures
        replayed = graphs.generate(inputs, STEPS, **kwargs)  # replays
    assert torch.equal(first.tokens, expected.cpu())
    assert torch.equal(replayed.tokens, expected.cpu())


@pytest.mark.parametrize("name", ["unified", "holitom", "fastv"])
def test_inner_stage_reads_no_value_on_the_host(family, name):
    """The fast path captures the inner stage in its prefill graph, so ``merge_rows`` may not
    read a tensor's value on the host (a sync, refused during a capture). On the meta device
    every such read fails: the same call on meta copies of its inputs must go through."""
    family_name, model = family
    inputs = family_batch(family_name, family_prompts(family_name))
    press = tiny_press(name)
    with torch.no_grad(), press(model) as run:
        kwargs, call = run.compress_prompt(inputs)
        plan = run.inner_plan(call)
    positions = FastGenerator(run)._rope_positions(kwargs["position_ids"])
    embeds = kwargs["inputs_embeds"]
    rope = get_adapter(model).position_embeddings(embeds, positions)
    meta = copy.deepcopy(model).to("meta")
    plan_meta = dataclasses.replace(plan, visual=[v.to("meta") for v in plan.visual])
    captured = {"hidden": embeds.to("meta"), "rope": tuple(r.to("meta") for r in rope)}
    with torch.no_grad(), F.values_unread():
        short, index, keep_index, importances = merge_rows(
            get_adapter(meta),
            press.inner_stage(),
            plan_meta,
            captured,
            embeds.to("meta"),
            kwargs["attention_mask"].bool().to("meta"),
            call.sizes.to("meta"),
        )
    assert short.shape == (embeds.shape[0], plan.width, embeds.shape[2])
    assert index.shape == (embeds.shape[0], plan.width)
    assert [k.numel() for k in keep_index] == plan.keeps
    assert all(i.shape == v.shape for i, v in zip(importances, plan.visual, strict=True))


def test_the_fast_path_refuses_to_run_inside_replay():
    model = family_model("llava_onevision")
    inputs = family_batch("llava_onevision", family_prompts("llava_onevision")[:1])
    with tiny_press("unified")(model) as run:
        model.generate(**inputs, max_new_tokens=1)
        with run.replay(), pytest.raises(ValueError, match="replay"):
            FastGenerator(run).generate(inputs, 2)


def test_compiled_decoder_gives_the_same_tokens_and_is_undone():
    """compile= swaps in compiled norms, MLPs and rotary application during the calls only.
    "aot_eager" traces them as inductor would, without generating code (CPU-fast); the
    inductor kernels are checked on a GPU."""
    model = family_model("llava_onevision")
    inputs = family_batch("llava_onevision", family_prompts("llava_onevision"))
    layer = get_adapter(model).decoder_layers[0]
    home = sys.modules[type(layer.self_attn).__module__]
    stock_rope = home.apply_rotary_pos_emb
    with tiny_press("unified")(model) as run:
        expected, _, _ = greedy(model, inputs, steps=8)
        fast = FastGenerator(run, compile="aot_eager")
        out = fast.generate(inputs, 8, ignore_eos=True, suppress_tokens=_suppressed(model))
    assert torch.equal(out.tokens, expected)
    assert "forward" not in layer.mlp.__dict__
    assert "forward" not in layer.input_layernorm.__dict__
    assert home.apply_rotary_pos_emb is stock_rope
    with tiny_press("unified")(model) as run:
        for bad in ("", 1, None):
            with pytest.raises(ValueError, match="compile must be"):
                FastGenerator(run, compile=bad)


@pytest.mark.gpu
@pytest.mark.parametrize("family_name", FAMILIES)
def test_compiled_cuda_graphs_give_the_uncompiled_tokens(family_name):
    """inductor's fused kernels round differently from the stock ones (in bf16); on the tiny
    models the greedy tokens stay those of the uncompiled graphs, captured and replayed."""
    model = family_model(family_name).cuda().to(torch.bfloat16)
    inputs = family_batch(family_name, family_prompts(family_name))
    inputs = {k: v.cuda() for k, v in inputs.items()}
    inputs = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}
    kwargs = dict(ignore_eos=True, suppress_tokens=_suppressed(model))
    with tiny_press("unified")(model) as run:
        plain = FastGenerator(run, cuda_graphs=True).generate(inputs, STEPS, **kwargs)
        fused = FastGenerator(run, cuda_graphs=True, compile=True)
        first = fused.generate(inputs, STEPS, **kwargs)  # compiles and captures
        replayed = fused.generate(inputs, STEPS, **kwargs)
    assert torch.equal(first.tokens, plain.tokens)
    assert torch.equal(replayed.tokens, plain.tokens)
