"""``python -m roost.daemon`` runs ``roostd``."""

from roost.daemon.main import main

main()
