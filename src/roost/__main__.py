"""``python -m roost`` runs the CLI."""

from roost.cli.app import main

main()
