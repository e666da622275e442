"""The demo models that retell the article's stories: synthetic data, small architectures, training and
held-out evaluation (pure torch/numpy/OpenCV).

- `tank_scenes`: field photos with or without a tank, sunny or cloudy (the tanks-and-weather legend).
- `seismic_sections`: seismic-like sections with salt bodies and their masks (the salt U-Net).
- `floor_views`: a robot's camera views of a floor with obstacles, 5 directions × 5 distances.
- `networks`: TankNet (SE block, global pooling, one Linear), SaltUNet, RobotNet.
- `catalog`: names, labels and weight files; `recipes` / `training`: how they are trained;
  `evaluation`: held-out measurements; `story_pictures`: the Stories page's pictures; `readout`: whole
  outputs for one picture.

Registered as models by `cnnvis_engine.models.demos`; trained by `scripts/train_demos.py`. This package
imports nothing from `cnnvis_engine.models` at import time, so the registry can import it.
"""
