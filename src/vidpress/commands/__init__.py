"""The ``vidpress`` commands, one module each (named as the command): its one-line ``HELP``, its
``DESCRIPTION``, ``add_arguments(parser)`` and ``main(args) -> int``; ``arguments`` holds the
arguments and checks several commands share. ``vidpress.cli`` lists them and dispatches."""
