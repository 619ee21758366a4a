"""Arguments and checks shared by several commands: the press (``--press/--retention/--param``,
read with the settings grammar of ``vidpress.presses.settings``), the checkpoint, the device and
dtype, the testbed's projector weights, and the writable output folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vidpress.presses import PAPER_PRESS, PRESSES


def check_output_dir(path, argument: str) -> None:
    """ValueError naming ``argument`` unless ``path`` is a writable folder or can be made one
    (its nearest existing ancestor is a writable folder)."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{argument} {path}: {existing} exists and is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{argument} {path}: folder {existing} is not writable")


def press_arguments(parser: argparse.ArgumentParser) -> None:
    """--press, --retention, --param: shared by run and viz."""
    parser.add_argument(
        "--press",
        default=PAPER_PRESS,
        help=f"none or one of {', '.join(PRESSES)} (default: {PAPER_PRESS})",
    )
    parser.add_argument(
        "--retention",
        type=float,
        help="ratio in (0, 1] of the visual tokens entering the LLM (default: the press's, 0.02; "
        "fastv: kept from its layer on)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other press parameter, e.g. inner_keep=0.5 inner_layer=18 tau=0.7 (repeatable)",
    )


def press_from_args(args: argparse.Namespace):
    """The press of ``--press/--retention/--param`` (None for "none"): the settings text
    ``PRESS:PARAM,...,retention=R`` (``vidpress.presses.settings``)."""
    from vidpress.presses.settings import make_press, with_options

    retention = [] if args.retention is None else [f"retention={args.retention!r}"]
    return make_press(with_options(args.press, [*(getattr(args, "param", []) or []), *retention]))


def checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """--model DIR: a local checkpoint folder (run, viz)."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="local transformers checkpoint folder: LLaVA-OneVision, Qwen2.5-VL, or the testbed",
    )


def device_argument(parser: argparse.ArgumentParser) -> None:
    """--device (run, viz, demo, eval)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def dtype_argument(parser: argparse.ArgumentParser) -> None:
    """--dtype of a loaded checkpoint (run, viz)."""
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")


def weights_argument(parser: argparse.ArgumentParser, when: str = "") -> None:
    """--weights of the testbed (testbed build, eval, the testbed diagnostics in benchmarks/);
    ``when``: a prefix for the help ("when building: ")."""
    parser.add_argument(
        "--weights",
        default="committed",
        help=f"{when}committed (default), untrained, or a .safetensors path",
    )


def projector_weights(value: str):
    """--weights of the testbed: committed, untrained or a path -> build_testbed's
    projector_state."""
    return None if value == "untrained" else value
