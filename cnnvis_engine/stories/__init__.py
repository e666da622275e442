"""What the article's stories measure with the demo models, above the explainer (pure torch/numpy).

- `evaluation`: held-out measurements on freshly generated scenes (accuracy, IoU, how much of a Grad-CAM
  falls on the tank or the salt), for the model cards (`scripts/train_demos.py`), the tests and the Stories page.
- `readout`: a demo model's whole answer for one picture (the salt mask, every obstacle output).

The data, networks and training they use sit below the registry, in `cnnvis_engine.demos`.
"""
