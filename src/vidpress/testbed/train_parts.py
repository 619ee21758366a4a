"""The trained parts of the testbed: LM adapters, the projector's standardised input, export.

- ``LoRALinear`` / ``add_lora``: rank-r adapters on the LM's linear layers (``W x + B A x``),
  exported as ``<linear>.lora_A`` / ``.lora_B`` (scale folded into B, int8-packed) and merged into
  the LM weights by ``build_testbed``, so the built model is a stock one.
- ``StandardisedInput``: the projector's first layer trains on standardised DINOv2 features (two
  of the 384 dims carry offsets of about 20 against a spread of about 1); the affine map is folded
  into that layer on export.
- ``load_trained`` continues from an exported file (all parts, the projector widened to more
  DINOv2 layers, or the adapters only).
"""

from __future__ import annotations

import torch
from torch import nn

from vidpress.adapters.llava_onevision import feature_layers, selected_features
from vidpress.testbed.build import (
    FEATURE_LAYER_KEY,
    LORA_SUFFIXES,
    TRAINABLE_PREFIXES,
    FeatureLayer,
    feature_layer_entry,
    feature_layer_of,
    pack_adapters,
    unpack_adapters,
    weights_for_layer,
)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
INIT_PARTS = ("all", "widen", "adapters")  # what --init-weights carries over (load_trained)
PROJECTOR_1 = "model.multi_modal_projector.linear_1"


class LoRALinear(nn.Module):
    """``base(x) + (x A^T) B^T * scale``; ``base`` frozen, A small random, B zero (a no-op)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        a = torch.randn(rank, base.in_features, generator=generator) / base.in_features**0.5
        self.lora_A = nn.Parameter(a.to(base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.lora_A.to(x.dtype), self.lora_B.to(x.dtype)
        return self.base(x) + (x @ a.t()) @ b.t() * self.scale


def add_lora(model, rank: int, alpha: float, targets, seed: int = 0) -> dict[str, LoRALinear]:
    """Wrap the LM's linear layers named in ``targets``; returns {parameter prefix: wrapper}."""
    gen = torch.Generator().manual_seed(seed)
    wrapped = {}
    lm = model.model.language_model
    for name, module in list(lm.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                wrapper = LoRALinear(child, rank, alpha, gen)
                setattr(module, child_name, wrapper)
                full = f"model.language_model.{name}.{child_name}" if name else child_name
                wrapped[full] = wrapper
    return wrapped


class StandardisedInput:
    """The projector's first layer sees ``(x - mean) / std`` while training (a forward pre-hook).

    ``mean``, ``std``: [384] statistics of the vision features (``feature_stats``). The map is
    affine, so ``folded`` turns the trained layer into a stock one that takes raw features
    (``W / std``, ``b - (W / std) mean``) and ``unfold`` inverts that for a resumed run.
    """

    def __init__(self, linear: nn.Linear, mean: torch.Tensor, std: torch.Tensor):
        self.linear, self.mean, self.std = linear, mean.float(), std.float()
        self.handle = linear.register_forward_pre_hook(self._standardise)

    def _standardise(self, module, args):
        x = args[0]
        return ((x - self.mean.to(x.dtype)) / self.std.to(x.dtype),)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.linear.weight.detach().float() / self.std
        return w, self.linear.bias.detach().float() - w @ self.mean

    @torch.no_grad()
    def unfold(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        weight, bias = weight.float().to(self.std.device), bias.float().to(self.std.device)
        self.linear.weight.copy_(weight * self.std)
        self.linear.bias.copy_(bias + weight @ self.mean)

    def remove(self) -> None:
        self.handle.remove()


@torch.no_grad()
def feature_stats(model, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dim mean and std [D] of the features the projector reads, over pixels [N, 3, S, S]."""
    cfg = model.config
    hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states
    feats = (
        selected_features(hidden, cfg.vision_feature_layer, cfg.vision_feature_select_strategy)
        .flatten(0, 1)
        .float()
    )
    return feats.mean(0), feats.std(0).clamp_min(1e-3)


def export_weights(model, loras: dict[str, LoRALinear], standardised=None) -> dict:
    """Trained weights: projector (standardisation folded in) and newline in bf16, the
    (scale-folded) adapters packed as int8 (``build.pack_adapters``), and the DINOv2 layer they
    read (``vision_feature_layer``, which ``assemble_testbed`` configures from them)."""
    out = {FEATURE_LAYER_KEY: feature_layer_entry(model.config.vision_feature_layer)}
    for name, param in model.named_parameters():
        if name.startswith(TRAINABLE_PREFIXES):
            out[name] = param.detach().float()
    if standardised is not None:
        out[f"{PROJECTOR_1}.weight"], out[f"{PROJECTOR_1}.bias"] = standardised.folded()
    for prefix, lora in loras.items():
        out[f"{prefix}.lora_A"] = lora.lora_A.detach().float()
        out[f"{prefix}.lora_B"] = lora.lora_B.detach().float() * lora.scale
    out = {  # the adapters stay fp32 until packed
        k: v.to("cpu", torch.bfloat16) if k.startswith(TRAINABLE_PREFIXES) else v.cpu()
        for k, v in out.items()
    }
    return pack_adapters(out)


def widen_projector_input(
    weight: torch.Tensor, old: FeatureLayer, new: FeatureLayer, width: int
) -> torch.Tensor:
    """The projector's first weight [out, width * len(old)], trained on the layers ``old``, as a
    weight [out, width * len(new)] for the layers ``new`` (which include them): each old layer's
    columns move to its place in ``new``; the added layers' columns are zero, so the projector
    computes the same function until training gives them weight."""
    old, new = feature_layers(old), feature_layers(new)
    if missing := [layer for layer in old if layer not in new]:
        raise ValueError(
            f"init_parts='widen' adds layers: vision_feature_layer={new} lacks {missing}, "
            f"which the init weights read"
        )
    if weight.shape[1] != width * len(old):
        raise ValueError(f"projector weight {tuple(weight.shape)} does not read {old} x {width}")
    wide = weight.new_zeros(weight.shape[0], width * len(new))
    for i, layer in enumerate(old):
        j = new.index(layer)
        wide[:, j * width : (j + 1) * width] = weight[:, i * width : (i + 1) * width]
    return wide


@torch.no_grad()
def load_trained(model, loras, weights: dict, standardised, parts: str = "all") -> None:
    """Inverse of ``export_weights``: continue training from an exported file. ``parts``:
    "all"; "widen" (everything, the model reading more DINOv2 layers than the file: the added
    layers' projector inputs start at zero, ``widen_projector_input``); or "adapters" (the LM
    adapters only: a fresh projector, e.g. on another layer)."""
    if parts not in INIT_PARTS:
        raise ValueError(f"init_parts must be one of {INIT_PARTS}, got {parts!r}")
    if parts == "widen":
        key, layer = f"{PROJECTOR_1}.weight", model.config.vision_feature_layer
        width = model.config.vision_config.hidden_size
        weights = {
            **weights,
            key: widen_projector_input(weights[key], feature_layer_of(weights), layer, width),
            FEATURE_LAYER_KEY: feature_layer_entry(layer),
        }
    if parts == "adapters":
        weights = {k: v for k, v in unpack_adapters(weights).items() if k.endswith(LORA_SUFFIXES)}
    else:
        hint = "pass init_parts='widen' (more layers), 'adapters' (fresh projector) or the layer"
        weights = unpack_adapters(weights_for_layer(weights, model, hint))
    params = dict(model.named_parameters())
    for key, value in weights.items():
        if key.endswith(LORA_SUFFIXES):
            lora = loras.get(key.rsplit(".", 1)[0])
            if lora is None:
                raise ValueError(f"init weights: adapter {key!r} has no matching LoRA layer")
            if key.endswith(".lora_A"):
                lora.lora_A.copy_(value.float())
            else:
                lora.lora_B.copy_(value.float() / lora.scale)
        elif key in params:
            params[key].copy_(value.float())
        else:
            raise ValueError(f"init weights: {key!r} is not a trained parameter")
    if standardised is not None and parts != "adapters":
        standardised.unfold(weights[f"{PROJECTOR_1}.weight"], weights[f"{PROJECTOR_1}.bias"])
