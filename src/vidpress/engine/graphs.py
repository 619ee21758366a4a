"""A function at fixed input shapes, replayed as a CUDA graph (or run eagerly)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch

from vidpress import functional as F


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


class PlannedReplays:
    """The device work of stage-1 methods (``functional.Planned``) as CUDA graphs, one per key.

    Pass as ``runner`` to ``functional.compress_with`` (the fast path does): the methods that
    take a runner (VisionZip, FastVID, unified) hand it each piece of device work that follows
    a host decision. That piece is captured the first time its key and input shapes are seen,
    inside ``values_unread`` (it reads no values anyway), and replayed on the inputs of later
    calls with the same key; what a graph returns is copied, so it outlives the next replay.
    With ``graphs=False`` the first ``apply`` of a key is called again on the inputs of later
    calls, as a graph would replay it (CPU tests of that contract).

    Each graph keeps its own memory pool (its inputs, outputs and temporaries), so at most
    ``max_graphs`` are kept, the least recently used dropped first: FastVID's and unified's keys
    vary from video to video. ``captures``: graphs captured so far (dropped ones included).
    """

    def __init__(self, graphs: bool = True, max_graphs: int = 16):
        if isinstance(max_graphs, bool) or not isinstance(max_graphs, int) or max_graphs < 1:
            raise ValueError(f"max_graphs must be an integer >= 1, got {max_graphs!r}")
        self.graphs = graphs
        self.max_graphs = max_graphs
        self.captures = 0
        self._replays: OrderedDict[tuple, Replay] = OrderedDict()

    def __len__(self) -> int:
        """Graphs kept now."""
        return len(self._replays)

    def __call__(self, planned: F.Planned):
        shapes = tuple((tuple(x.shape), x.dtype, x.device) for x in planned.inputs)
        key = (planned.key, shapes)
        if key in self._replays:
            self._replays.move_to_end(key)
        else:
            self._replays[key] = Replay(_unread(planned.apply), self.graphs, pool=None)
            self.captures += 1
            if len(self._replays) > self.max_graphs:
                self._replays.popitem(last=False)
        out = self._replays[key](*planned.inputs)
        return _owned(out) if self.graphs else out  # eager outputs are fresh already


def _owned(out):
    """A copy of a replay's outputs: a tensor, a ``CompressedTokens``, or a tuple (a named
    one keeps its type) of them."""
    if isinstance(out, tuple):
        items = [_owned(x) for x in out]
        return type(out)(*items) if hasattr(out, "_fields") else tuple(items)
    return out.clone()


def _unread(fn: Callable) -> Callable:
    """``fn`` run inside ``values_unread`` (no host read of a value: a graph cannot hold one)."""

    def unread(*inputs):
        with F.values_unread():
            return fn(*inputs)

    return unread
