"""``python -m corral``: the ``corral`` command, for environments without its script."""

from corral.cli import main

main()
