"""cnnvis: what a convolutional neural network looks at.

    import cnnvis
    url = cnnvis.show(model, labels=["cat", "dog"], input_size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)
    cnnvis.stop()

`show` starts the dashboard inside this Python process on that in-memory model (see `cnnvis.session`);
`load_model` is the engine's (registered names, `torchvision:<name>`, `timm:<name>`, `path/net.py:build`).
The command line: `cnnvis serve [--model net.py:build ...]` and `cnnvis report ...` (see `cnnvis.cli`).
"""

from cnnvis_engine import EngineError, Explainer, load_model

from .session import show, stop

__all__ = ["EngineError", "Explainer", "load_model", "show", "stop"]
