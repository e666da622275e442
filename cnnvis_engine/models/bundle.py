"""ModelBundle: a ready-to-explain model with everything needed around it."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from PIL import Image

from ..errors import EngineError, ImageError, ModelError

if TYPE_CHECKING:
    from ..images import DecodedImage

TaskKind = Literal["classification", "segmentation", "regression"]
WeightsSource = Literal["pretrained", "random", "embedded", "file", "demo"]

# A batch as the model takes it: (N, C, H, W) on the model's device, the pictures as the model sees them ((H, W, 3)
# uint8 each) and their decoding notes.
ModelInput = tuple[torch.Tensor, list[np.ndarray], list[tuple[str, ...]]]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine map from RGB in [0, 255] to the model's input: x = (rgb / scale - mean) / std.

    One mean and std per input channel: three for RGB, one for a grayscale model, which gets the picture's
    luma (ITU-R 601, rounded as PIL's `convert("L")`)."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    scale: float = 255.0

    @property
    def channels(self) -> int:
        return len(self.mean)

    def for_channels(self, channels: int) -> Normalization:
        """The same normalisation for `channels` (1 or 3) input channels: RGB values averaged for grayscale,
        a grayscale value repeated for RGB."""
        if channels == self.channels:
            return self
        if channels == 1:
            return Normalization((sum(self.mean) / len(self.mean),), (sum(self.std) / len(self.std),), self.scale)
        return Normalization(self.mean * channels, self.std * channels, self.scale)

    def apply(self, rgb: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
        """(..., H, W, 3) uint8 -> (..., C, H, W) float32 tensor on `device`; the bytes cross to it once.
        One conversion into the channel-first layout, then x * (1 / (scale * std)) - mean / std in place: a
        third of the time of dividing step by step (52 vs 145 µs at 224 px), equal to it within 5e-7."""
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).to(device).movedim(-1, -3)
        if self.channels == 1:
            pixels = _luma(pixels)
        x = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device).copy_(pixels)
        factor, offset = self._affine
        return x.mul_(factor.to(x.device)).add_(offset.to(x.device))

    @functools.cached_property
    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, 1, 1) factor and offset of `apply`, computed in float64 once."""
        std = torch.tensor(self.std, dtype=torch.float64)
        factor = 1 / (self.scale * std)
        offset = -torch.tensor(self.mean, dtype=torch.float64) / std
        return factor.float().view(-1, 1, 1), offset.float().view(-1, 1, 1)

    def invert(self, x: torch.Tensor) -> np.ndarray:
        """(..., C, H, W) tensor -> (..., H, W, 3) uint8 array (a grayscale input shown as gray RGB)."""
        mean = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        rgb = ((x.detach() * std + mean) * self.scale).clamp(0, 255).round().byte()
        if rgb.shape[-3] == 1:
            rgb = rgb.repeat_interleave(3, dim=-3)
        return rgb.movedim(-3, -1).cpu().numpy()


_LUMA = (19595, 38470, 7471)  # 0.299, 0.587, 0.114 in 16-bit fixed point, as PIL's RGB -> "L"


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) uint8 -> (..., 1, H, W) uint8 luma, equal to PIL's `convert("L")`."""
    weights = torch.tensor(_LUMA, dtype=torch.int32, device=rgb.device).view(3, 1, 1)
    return ((rgb.int() * weights).sum(dim=-3, keepdim=True) + 0x8000).bitwise_right_shift(16).byte()


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """A batch of several images on the CPU goes through the model channels-last: oneDNN convolves it a third
    faster (resnet50, 64 images at 224 px: 2.7 s instead of 4.3 s without gradients; 16 there and back to the
    input: 1.0 s instead of 1.25 s). Outputs equal the usual layout's to 3e-7; input gradients differ only
    where float32 rounding flips a ReLU, by as much as the usual layout differs from a float64 reference
    (resnet50 at random: 5% at the worst pixel for both). Autograd takes gradients back to `x` as it was."""
    if x.device.type == "cpu" and x.dim() == 4 and len(x) > 1:
        return x.contiguous(memory_format=torch.channels_last)
    return x


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """A model in eval mode plus its preprocessing, labels and provenance.

    `prepare(image)` resizes to `input_size` (no crop, so every map aligns with the whole picture) and
    returns the display array `(H, W, 3) uint8` and the input tensor `(C, H, W)`: C = 3, or 1 for a grayscale
    model (`normalization` has one mean), whose display stays RGB so maps overlay the picture as it was.
    """

    name: str
    module: torch.nn.Module
    class_names: tuple[str, ...]
    task: TaskKind = "classification"
    input_size: tuple[int, int] = (224, 224)  # (height, width)
    normalization: Normalization = field(default_factory=Normalization)
    weights_source: WeightsSource = "pretrained"
    weights_detail: str = ""  # where the weights came from, for reports: a file, a package, a URL
    description: str = ""
    output_names: tuple[str, ...] = ()  # regression / multi-output names; empty for classification
    # Forward passes register module hooks; the lock keeps two threads from seeing each other's hooks.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def resize(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> (H, W, 3) uint8 at the model's input size."""
        height, width = self.input_size
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(rgb)

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, torch.Tensor]:
        display = self.resize(image)
        return display, self.normalization.apply(display)

    def batch(self, decoded: Sequence[DecodedImage]) -> ModelInput:
        """Decoded pictures as one input: each resized and normalised as `prepare` does, on the model's device."""
        displays = [self.resize(d.image) for d in decoded]
        x = self.normalization.apply(np.stack(displays), self.device)
        return x, displays, [d.notes for d in decoded]

    def batch_of_tensor(self, x: torch.Tensor) -> ModelInput:
        """A ready batch (checked by `check_batch`), copied to the model's device; its pictures by inverting the
        normalisation."""
        self.check_batch(x)
        x = x.detach().to(self.device, torch.float32)
        return x.clone(), list(self.normalization.invert(x)), [()] * len(x)

    def check_batch(self, x: torch.Tensor) -> None:
        """A ready batch must have the model's input shape and hold only finite values: a NaN would be traced (CAM
        then judged from NaN outputs) before anything could notice."""
        expected = (self.channels, *self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected or not x.is_floating_point():
            raise ImageError(
                f"A ready batch must be a float tensor of shape (N, {', '.join(map(str, expected))}); "
                f"got {tuple(x.shape)}."
            )
        finite = torch.isfinite(x.detach()).flatten(1).all(dim=1)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite).flatten().tolist()
            which = f"image {bad[0]}" if len(bad) == 1 else f"{len(bad)} images (the first is image {bad[0]})"
            raise ImageError(
                f"The batch holds NaN or infinite values in {which}, so it cannot be explained; nothing was run."
            )

    def run(self, x: torch.Tensor, *, failed_on: str = "this image", hint: str = "", fast: bool = True) -> torch.Tensor:
        """The model's output for a batch x (N, C, H, W): the one way every pass runs the model.

        Under the lock (no other thread's hooks fire; a caller that records layers opens `hooks.capture`
        inside the same lock), in `fast_layout` unless `fast` is False, attached to a graph when the caller
        has gradients on; the first output of a model that returns a tuple. A failure of the model itself
        becomes a ModelError, "The model <name> failed on <failed_on>: <its first line><hint>" (an
        EngineError, from a hook or a contained model, passes as it is)."""
        with self.lock:
            try:
                output: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]
                output = self.module(fast_layout(x) if fast else x)
            except EngineError:
                raise
            except Exception as error:  # the model itself failed on this input
                first_line = (str(error).splitlines() or [type(error).__name__])[0]
                raise ModelError(f"The model {self.name} failed on {failed_on}: {first_line}{hint}") from error
        return output[0] if isinstance(output, (tuple, list)) else output

    @property
    def channels(self) -> int:
        """Input channels: 3 (RGB) or 1 (grayscale)."""
        return self.normalization.channels

    @property
    def device(self) -> torch.device:
        param = next(self.module.parameters(), None)
        return param.device if param is not None else torch.device("cpu")
