"""A function at fixed input shapes, replayed as a CUDA graph (or run eagerly)."""

from __future__ import annotations

from collections.abc import Callable

import torch


class Replay:
    """``fn(*inputs)`` at fixed input shapes. Eager when ``graphs`` is False; else captured as a
    CUDA graph on the first call (after one warm-up run on a side stream) and replayed on later
    calls, with the inputs copied into the captured ones. The outputs are the graph's own
    tensors: read them before the next call.

    before: run before every call (e.g. a cache reset). state: the tensors ``fn`` updates in
    place (cache lengths, counters); the warm-up's updates of them are undone.
    """

    def __init__(
        self,
        fn: Callable,
        graphs: bool,
        pool,
        before: Callable[[], None] | None = None,
        state: Callable[[], list[torch.Tensor]] = list,
    ):
        self.fn = fn
        self.graphs = graphs
        self.pool = pool
        self.before = before
        self.state = state
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple = ()
        self.outputs = None

    def __call__(self, *inputs):
        if self.before is not None:
            self.before()
        if not self.graphs:
            return self.fn(*inputs)
        if self.graph is None:
            self.inputs = tuple(x.clone() for x in inputs)
            state = self.state()
            saved = [t.clone() for t in state]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.fn(*self.inputs)  # warm-up: lazy initialisation, workspaces
            torch.cuda.current_stream().wait_stream(side)
            for tensor, value in zip(state, saved, strict=True):
                tensor.copy_(value)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=self.pool):
                self.outputs = self.fn(*self.inputs)
        else:
            for static, x in zip(self.inputs, inputs, strict=True):
                static.copy_(x)
        self.graph.replay()
        return self.outputs
