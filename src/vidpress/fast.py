"""``from vidpress.fast import FastGenerator``: the public name of ``vidpress.engine.fast``."""

from vidpress.engine.fast import FastGenerator, FastOutput

__all__ = ["FastGenerator", "FastOutput"]
