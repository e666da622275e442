"""`python -m cnnvis_engine report ...`: see cnnvis_engine.cli."""

from .cli import main

raise SystemExit(main())
