"""The decoder's memory-bound pieces under ``torch.compile``, for the fast path (opt-in).

At a compressed prompt (~160 rows) a 7B decoder's matrix products read the weights once and
take ~60% of the prefill; the rest is hundreds of small kernels: RMSNorm (a float32 copy, a
square, a mean, a reciprocal root, two products), the rotary embedding's application (slices,
a negation, a concatenation, products and sums for queries and keys), the MLP's SiLU and
product. ``torch.compile`` fuses each of these into one or two kernels; the matrix products
stay cuBLAS's. Compiled here, per decoder layer: ``input_layernorm``, ``post_attention_layernorm``,
``mlp``, and the attention's ``apply_rotary_pos_emb`` (a function of the layer's modeling module,
which the attention looks up when it runs). The attention itself, with its static-cache update,
stays eager. Values change within the dtype's rounding (fused kernels round once, in float32).

Installed only while ``installed()`` is open and undone on exit: the model outside the fast
path runs its stock code.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import torch
from torch import nn

PARTS = ("input_layernorm", "post_attention_layernorm", "mlp")
ROPE = "apply_rotary_pos_emb"


class CompiledDecoder:
    """Compiled forwards of ``layers``' norms and MLPs and of their rotary function.

    backend: ``torch.compile``'s backend ("inductor" fuses kernels; "aot_eager" traces without
    generating code, for tests of the plumbing). Compilation happens on the first call of each
    shape (a CUDA graph captures the compiled kernels, so replays do not run the compiler).
    """

    def __init__(self, layers: nn.ModuleList, backend: str = "inductor"):
        missing = [name for name in (*PARTS, "self_attn") if not hasattr(layers[0], name)]
        if missing:
            raise ValueError(
                f"compile needs decoder layers with {', '.join((*PARTS, 'self_attn'))}; "
                f"{type(layers[0]).__name__} has no {', '.join(missing)}"
            )
        self.home = sys.modules[type(layers[0].self_attn).__module__]
        if not callable(getattr(self.home, ROPE, None)):
            raise ValueError(f"compile needs {ROPE} in {self.home.__name__}; it has none")
        self.modules = [getattr(layer, name) for layer in layers for name in PARTS]
        self.forwards = [torch.compile(m.forward, backend=backend) for m in self.modules]
        self.rope = torch.compile(getattr(self.home, ROPE), backend=backend)

    @contextmanager
    def installed(self):
        """The compiled forwards in place of the stock ones while the block runs."""
        saved = [m.__dict__.get("forward") for m in self.modules]
        stock_rope = getattr(self.home, ROPE)
        for module, forward in zip(self.modules, self.forwards, strict=True):
            module.forward = forward
        setattr(self.home, ROPE, self.rope)
        try:
            yield
        finally:
            setattr(self.home, ROPE, stock_rope)
            for module, forward in zip(self.modules, saved, strict=True):
                if forward is None:
                    del module.forward
                else:
                    module.forward = forward
