"""``python -m deepzoo``: the ``deepzoo`` command."""

from deepzoo.cli import main

main()
