"""``python -m geospade`` runs the command line."""

from geospade.cli.main import main

raise SystemExit(main())
