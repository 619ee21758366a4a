"""Input validation shared by every algorithm: one clear ValueError per bad argument."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_READ_VALUES: ContextVar[bool] = ContextVar("vidpress_read_values", default=True)


@contextmanager
def values_unread() -> Iterator[None]:
    """Inside this block ``check_finite`` does not read the tensors' values (a host sync): for
    work captured in a CUDA graph (the fast path's inner stage), on tensors the model made."""
    token = _READ_VALUES.set(False)
    try:
        yield
    finally:
        _READ_VALUES.reset(token)


def is_integer(value) -> bool:
    """An integer of any kind (Python, NumPy) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A real number of any kind (Python, NumPy) that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_tensor(
    name: str, x: torch.Tensor, ndim: int, shape_doc: str, *, finite: bool = True
) -> None:
    """Raise ValueError unless ``x`` is a non-empty floating tensor with ``ndim`` dims, and
    finite (``check_finite``) unless ``finite=False``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(x).__name__}"
        )
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if finite:
        check_finite({name: x})


def check_finite(tensors: dict[str, torch.Tensor]) -> None:
    """Raise ValueError naming the first of ``tensors`` (one device) that holds NaN or inf.

    One reduction per tensor (its largest magnitude is NaN or inf exactly when an entry is)
    and one wait for the device, however many tensors are checked; none inside
    ``values_unread``.
    """
    if not _READ_VALUES.get():
        return
    largest = [torch.linalg.vector_norm(x, ord=math.inf) for x in tensors.values()]
    finite = torch.isfinite(torch.stack([v.float() for v in largest])).tolist()
    for name, ok in zip(tensors, finite, strict=True):
        if not ok:
            raise ValueError(f"{name} contains NaN or inf; accepted: finite values only")


def check_video_inputs(tokens: torch.Tensor, scores: torch.Tensor) -> None:
    """Validate ``tokens: [T, N, D]`` and ``scores: [T, N]``: one device, the same (T, N),
    finite."""
    check_tensor("tokens", tokens, 3, "[T, N, D]", finite=False)
    if isinstance(scores, torch.Tensor) and scores.device != tokens.device:
        raise ValueError(
            f"scores must be on the tokens' device {tokens.device}, got {scores.device}"
        )
    check_tensor("scores", scores, 2, "[T, N]", finite=False)
    if tuple(scores.shape) != tuple(tokens.shape[:2]):
        raise ValueError(
            f"scores must have shape [T, N] = {tuple(tokens.shape[:2])} to match tokens "
            f"{tuple(tokens.shape)}, got {tuple(scores.shape)}"
        )
    check_finite({"tokens": tokens, "scores": scores})


def check_ratio(name: str, value: float, *, zero_ok: bool = False) -> float:
    """Raise unless ``value`` is a number in (0, 1] (or [0, 1] with ``zero_ok``)."""
    accepted = "[0, 1]" if zero_ok else "(0, 1]"
    if not is_real(value):
        raise ValueError(f"{name} must be a number in {accepted}, got {type(value).__name__}")
    if not ((value >= 0 if zero_ok else value > 0) and value <= 1):
        raise ValueError(f"{name} must be in {accepted}, got {value!r}")
    return float(value)


def check_int(name: str, value: int, minimum: int = 1) -> int:
    """Raise unless ``value`` is an integer >= ``minimum``; returns it as an int."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_flag(name: str, value: bool) -> bool:
    """Raise unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value
