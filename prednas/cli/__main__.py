"""``python -m prednas.cli``."""

from prednas.cli import main

main()
