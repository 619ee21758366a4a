"""The reproducibility record every eval, bench and run output carries.

``provenance(...)`` returns one JSON-ready dict: what ran (vidpress version and git revision, with a
flag when the work tree had uncommitted changes to tracked files), with what (Python, platform,
package versions, the device), how (press name, class and every parameter, frames, resolution,
seed) and on what (the suite and its items: whatever identifies them, plus a SHA-256 of the item
list so two outputs can be checked to cover the same items). Callers pass only what applies::

    from vidpress.provenance import provenance
    record = provenance(press=press, frames=32, resolution=392, seed=1,
                        items={"suite": "synthvqa", "split": "test", "ids": [0, 1, 2]})

Nothing here imports a model or touches the accelerator; it is cheap enough to call per output.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions change results; each is reported (None when not installed).
PACKAGES = (
    "vidpress",
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "safetensors",
    "numpy",
    "av",
    "gguf",
    "onnx",
    "lmms-eval",
)


def vidpress_version() -> str:
    """The installed vidpress version (``pyproject.toml``'s), or "unknown"."""
    try:
        return metadata.version("vidpress")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_revision() -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the checkout vidpress runs from.

    ``dirty``: tracked files differ from the commit (untracked files are ignored). Both are None
    when vidpress is not run from a git checkout (e.g. installed from a wheel) or git is missing.
    """
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """{distribution name: installed version or None}."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_record(device: Any = None) -> dict:
    """Where the run happened: the device asked for, and a CUDA GPU's name when it is one."""
    import torch

    name = str(device) if device is not None else "cpu"
    out = {"device": name, "torch_threads": torch.get_num_threads()}
    if name.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(name).index or 0
        out["gpu"] = torch.cuda.get_device_name(index)
        out["cuda"] = torch.version.cuda
    else:
        out["cpu"] = platform.processor() or platform.machine()
    return out


def press_record(press: Any = None) -> dict | None:
    """{"name", "class", "params"} of a press (a vidpress press instance, a short name, or None).

    ``name`` is the short name of ``vidpress.PRESSES`` ("unified", ...); ``params`` every dataclass
    field (the hyper-parameters), so the record rebuilds the press: ``PRESSES[name](**params)``.
    """
    if press is None:
        return None
    if isinstance(press, str):
        return {"name": press, "class": None, "params": {}}
    from vidpress.presses import press_name

    params = dataclasses.asdict(press) if dataclasses.is_dataclass(press) else {}
    return {"name": press_name(press), "class": type(press).__name__, "params": params}


def items_record(items: Any) -> dict | None:
    """The suite's items: a dict is kept as given, a list becomes {"ids": list}; in both cases a
    ``count`` (of ``ids`` when present) and a ``sha256`` of the canonical JSON are added."""
    if items is None:
        return None
    record = dict(items) if isinstance(items, dict) else {"ids": list(items)}
    if "ids" in record:
        record["ids"] = list(record["ids"])
        record.setdefault("count", len(record["ids"]))
    canonical = json.dumps(record, sort_keys=True, default=str).encode()
    record["sha256"] = hashlib.sha256(canonical).hexdigest()
    return record


def provenance(
    *,
    press: Any = None,
    press_params: dict | None = None,
    frames: int | None = None,
    resolution: Any = None,
    seed: int | None = None,
    items: Any = None,
    model: Any = None,
    device: Any = None,
    command: list[str] | None = None,
    extra: dict | None = None,
) -> dict:
    """The reproducibility record of one output (JSON-ready).

    press:        a press instance (its class and every field are recorded), a short name, or
                  None (uncompressed); ``press_params`` overrides/extends the recorded params
    frames:       sampled frames per video
    resolution:   frame size the model saw (an int side, or (height, width))
    seed:         the seed of the suite / sampling
    items:        the suite's items (see ``items_record``)
    model:        what identifies the model (a path, a name, or a dict)
    device:       the torch device used
    command:      the command line (default: ``sys.argv``)
    extra:        anything else, stored under "extra"
    """
    press_info = press_record(press)
    if press_params:
        press_info = press_info or {"name": None, "class": None, "params": {}}
        press_info = {**press_info, "params": {**press_info["params"], **press_params}}
    if isinstance(resolution, tuple):
        resolution = list(resolution)
    record = {
        "vidpress": {"version": vidpress_version(), "git": git_revision()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv if command is None else command),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device_record(device),
        "model": str(model) if isinstance(model, Path) else model,
        "press": press_info,
        "frames": frames,
        "resolution": resolution,
        "seed": seed,
        "items": items_record(items),
    }
    if extra:
        record["extra"] = extra
    return record
