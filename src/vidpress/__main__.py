"""``python -m vidpress``: the ``vidpress`` command line."""

from vidpress.cli import main

raise SystemExit(main())
