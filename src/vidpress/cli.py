"""The ``vidpress`` command line: the commands of ``vidpress.commands``, one module each.

Exit codes: 0 done; 2 bad input: a library ``ValueError`` (bad argument, missing or unreadable
video or checkpoint file) or ``OSError`` (a file that cannot be read or written) is one line
``vidpress: error: ...`` on stderr; 130 interrupted (Ctrl-C): ``vidpress: interrupted``. Other
exceptions are bugs and keep their traceback. Output folders are checked for writing before the
job starts (``vidpress.commands.arguments.check_output_dir``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

PROG = "vidpress"
EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130
COMMANDS = (
    "demo",
    "run",
    "viz",
    "flops",
    "bench",
    "eval",
    "testbed",
)  # modules of vidpress.commands


def command_module(name: str) -> ModuleType:
    """The module of command ``name`` (``vidpress.commands.<name>``)."""
    return importlib.import_module(f"vidpress.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Visual token compression for Video-LLMs."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = command_module(name)
        command = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit code (the
    module doc lists them)."""
    try:
        args = build_parser().parse_args(argv)
        return command_module(args.command).main(args)
    except (ValueError, OSError) as error:
        from vidpress.video_io import one_line

        print(f"{PROG}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
