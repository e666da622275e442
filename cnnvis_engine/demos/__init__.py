"""The demo models that retell the article's stories: synthetic data, small architectures and their training
(pure torch/numpy/OpenCV).

- `tank_scenes`: field photos with or without a tank, sunny or cloudy (the tanks-and-weather legend).
- `seismic_sections`: seismic-like sections with salt bodies and their masks (the salt U-Net).
- `floor_views`: a robot's camera views of a floor with obstacles, 5 directions × 5 distances.
- `networks`: TankNet (SE block, global pooling, one Linear), SaltUNet, RobotNet.
- `catalog`: names, labels and weight files; `recipes` / `training`: how they are trained;
  `story_pictures`: the Stories page's pictures; `marked_shapes`: the audit's marked-shape pictures.

Registered as models by `cnnvis_engine.models.demos`; trained by `scripts/train_demos.py`. The package sits
below the registry: of `cnnvis_engine.models` it imports only `models.bundle` (the bundle and normalisation
types), so the registry can import it. What the stories measure with these models (held-out evaluation,
Grad-CAM shares, one picture's whole answer) sits above the explainer, in `cnnvis_engine.stories`.
"""
