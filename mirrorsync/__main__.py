"""``python -m mirrorsync``."""

from mirrorsync.cli import main

main()
