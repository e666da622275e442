"""`python -m cnnvis serve|report ...`: see cnnvis.cli."""

from .cli import main

raise SystemExit(main())
