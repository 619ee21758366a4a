"""The model-independent press engine: hooks, prompt shortening, the inner stage, decoding.

- ``run``:     ``Run``, a press attached to one model (hooks, their removal, replay)
- ``prefill``: stage 1 of a prefill, the compressed prompt's embeddings, mask and positions
- ``inner``:   the inner stage at decoder layer K (scoring, merging, shortened layer inputs)
- ``decode``:  generate()'s decoding steps translated to the compressed prompt
- ``stats``:   ``CallStats``, what each compressed call did (``run.stats``)
- ``state``:   per-prompt (``Session``) and per-call (``Call``) state
- ``rows``:    row bookkeeping of shortened sequences
- ``fast``:    ``FastGenerator``, compressed generation at static shapes (CUDA graphs)
- ``graphs``:  ``Replay``, a function at fixed shapes replayed as a CUDA graph
- ``greedy``:  masks and token rules of the fast path's greedy decoding
Family details (vision tower, positions of the prompt, q/k of a decoder layer, ...) come from
the model's adapter (``vidpress.adapters``).
"""

from vidpress.engine.fast import FastGenerator, FastOutput
from vidpress.engine.run import Run
from vidpress.engine.stats import CallStats

__all__ = ["CallStats", "FastGenerator", "FastOutput", "Run"]
