"""`python -m cnnvis_engine report|audit ...`, as README documents it: the command line lives in the app package
(`cnnvis.cli`, the same as the `cnnvis` command); the engine keeps only functions. This delegates."""

from cnnvis.cli import main

raise SystemExit(main(prog="python -m cnnvis_engine"))
