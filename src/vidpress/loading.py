"""Load a local Video-LLM checkpoint of a supported family, checked before any weight is read.

- ``inspect_model_dir(dir)``: the family (``adapters.registry``: the first family whose
  ``model_type`` is the config's and that ``matches`` the folder, a variant first) and raw config.
- ``check_checkpoint_files(dir)``: every file loading needs is there and reads (CheckpointError).
- ``load_model(dir, device, dtype)``: the stock transformers class of the family in eval mode,
  its tokenizer, processor (the family's own, else the stock one when it loads), video processor
  settings and stock video processor (when torchvision imports): a ``LoadedModel``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vidpress.adapters.registry import checkpoint_family, get_family, supported_text
from vidpress.video_io import one_line

VIDEO_CONFIG_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


class CheckpointError(ValueError):
    """A checkpoint folder with a missing or unreadable file; the one-line message names it."""


WEIGHTS_FILE, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
TORCH_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
# the JSON files transformers reads from a checkpoint folder (a family may have its own)
JSON_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "chat_template.json",
    "processor_config.json",
    *VIDEO_CONFIG_FILES,
)


def read_json(path: Path):
    """The JSON value in ``path``; CheckpointError naming it when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"invalid JSON in {path}: {one_line(err)}") from err


def check_safetensors(path: Path) -> None:
    """CheckpointError naming ``path`` unless it is a safetensors file whose header reads and
    whose size is the one its header says (a truncated download fails)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"missing weights file {path}")
    try:
        with safe_open(str(path), "pt"):
            pass
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"corrupt weights file {path}: {one_line(err)}") from err


def check_checkpoint_files(model_dir) -> tuple[str, dict]:
    """(family, raw config) of a checkpoint folder whose files loading needs are there and read.

    Checks, without loading any weight: config.json (``inspect_model_dir``); the weights,
    ``model.safetensors`` or ``model.safetensors.index.json`` and every shard it names (each
    header read, each size as its header says; PyTorch ``.bin`` weights are only looked for); a
    tokenizer (one of ``TOKENIZER_FILES``); every JSON file of ``JSON_FILES`` present (and the
    family's ``own_files``) parses. Raises CheckpointError (a ValueError) naming the file.
    """
    family, raw = inspect_model_dir(model_dir)
    path = Path(model_dir)
    if (path / WEIGHTS_FILE).is_file():
        check_safetensors(path / WEIGHTS_FILE)
    elif (path / WEIGHTS_INDEX).is_file():
        index = read_json(path / WEIGHTS_INDEX)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"invalid {path / WEIGHTS_INDEX}: no weight_map")
        for shard in sorted(set(weight_map.values())):
            check_safetensors(path / shard)
    elif not any((path / name).is_file() for name in TORCH_WEIGHTS):
        raise CheckpointError(
            f"no model weights in {path}: expected {WEIGHTS_FILE}, {WEIGHTS_INDEX} with its "
            f"shards, or {TORCH_WEIGHTS[0]}"
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"no tokenizer in {path}: expected one of {', '.join(TOKENIZER_FILES)}"
        )
    for name in (*JSON_FILES, *get_family(family).own_files()):
        if (path / name).is_file():
            read_json(path / name)
    return family, raw


def inspect_model_dir(model_dir) -> tuple[str, dict]:
    """(family, raw config) of a local checkpoint folder, without loading weights.

    Raises ValueError for a missing folder, a folder without config.json, or an unsupported model.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise ValueError(f"model directory not found: {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"no config.json in {path}: not a transformers checkpoint folder")
    raw = read_json(config_file)
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"invalid {config_file}: a JSON object expected, got {type(raw).__name__}"
        )
    model_type = raw.get("model_type")
    family = checkpoint_family(path, model_type)
    if family is not None:
        return family.name, raw
    arch = ", ".join(raw.get("architectures") or []) or "unknown architecture"
    raise ValueError(
        f"unsupported model in {path} (model_type {model_type!r}, {arch}); vidpress supports "
        f"{supported_text()}"
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA device is available")
    return device


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in choices:
        raise ValueError(f"dtype must be one of auto, {', '.join(choices)}, got {dtype!r}")
    return choices[dtype]


@dataclass
class LoadedModel:
    """A model, its family and what turns (video, question) into its inputs."""

    model: Any
    family: str
    path: Path
    tokenizer: Any
    processor: Any = None  # the family's own processor, or the stock one when it loads
    video_config: dict = field(default_factory=dict)
    chat_template: str | None = None
    video_processor: Any = None  # the stock video processor when torchvision imports

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def read_video_config(path: Path) -> dict:
    """The checkpoint's video processor settings (first file of ``VIDEO_CONFIG_FILES`` found)."""
    for name in VIDEO_CONFIG_FILES:
        if (path / name).is_file():
            return read_json(path / name)
    return {}


def stock_video_processor(family: str, path: Path, processor=None):
    """The checkpoint's stock video processor (``processor.video_processor``, else the one its
    config files name, else the family's class defaults); None when torchvision does not import
    (the stock processors need it)."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):  # absent, or built for another torch
        return None
    import transformers

    if processor is not None:
        return processor.video_processor
    cfg = read_video_config(path)
    family_ = get_family(family)
    kwargs = family_.stock_processor_kwargs(cfg)
    if not cfg:
        return getattr(transformers, family_.video_processor)(**kwargs)
    try:
        return transformers.AutoVideoProcessor.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load the video processor of {path}: {one_line(err)}") from err


def _chat_template(path: Path, tokenizer) -> str | None:
    if getattr(tokenizer, "chat_template", None):
        return None  # the tokenizer renders it
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return read_json(path / "chat_template.json").get("chat_template")
    return None


@contextlib.contextmanager
def _loading_errors(what: str, path: Path):
    """transformers' OSError / ValueError while loading ``what`` becomes a CheckpointError
    naming the folder."""
    try:
        yield
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load {what} in {path}: {one_line(err)}") from err


def load_model(model_dir, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load a supported local checkpoint (stock transformers classes) in eval mode.

    The folder's files are checked first (``check_checkpoint_files``); a file transformers still
    cannot load is a CheckpointError naming the folder.
    """
    family, raw = check_checkpoint_files(model_dir)
    family_ = get_family(family)
    path = Path(model_dir)
    device_ = resolve_device(device)
    dtype_ = resolve_dtype(dtype, device_)
    import transformers

    cls = getattr(transformers, family_.model_class)
    with _loading_errors("the model", path):
        model = cls.from_pretrained(path, dtype=dtype_).to(device_).eval()
    with _loading_errors("the tokenizer", path):
        own = family_.load_processor(path)
    if own is not None:
        return LoadedModel(model, family, path, own.tokenizer, own)
    processor = None
    try:  # the stock processor needs torchvision for its video part; use it when it loads
        processor = transformers.AutoProcessor.from_pretrained(path)
        tokenizer = processor.tokenizer
    except Exception:
        with _loading_errors("the tokenizer", path):
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    template = None if processor is not None else _chat_template(path, tokenizer)
    video_config = read_video_config(path)
    stock = stock_video_processor(family, path, processor)
    return LoadedModel(model, family, path, tokenizer, processor, video_config, template, stock)
