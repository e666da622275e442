"""The image being optimised, parameterised as in Olah et al., "Feature Visualization" (Distill 2017,
https://distill.pub/2017/feature-visualization/#preconditioning) and Lucid/Lucent's `param.image(fft=True,
decorrelate=True)`.

The free tensor is a spectrum `(N, 3, H, W//2 + 1, 2)` (real and imaginary parts) in a decorrelated colour
space. Each frequency f is scaled by 1 / max(f, 1 / max(H, W)), so every frequency learns at the same rate
(gradient descent in pixel space favours high frequencies); an inverse real FFT gives the image, the square
root of ImageNet's colour covariance (Lucid's SVD sqrt, columns normalised to at most unit length) maps it to
correlated RGB, and a sigmoid squashes it into [0, 1]:

    rgb = sigmoid(C · irfft2(scale ⊙ spectrum) / 4)
"""

from __future__ import annotations

import numpy as np
import torch

# Square root of ImageNet's RGB covariance (Lucid, `lucid/optvis/param/color.py`).
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
_MAX_NORM_SVD_SQRT = float(np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)))
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / _MAX_NORM_SVD_SQRT
_FFT_MAGIC = 4.0  # Lucid's constant: keeps the initial image in the sigmoid's linear range


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """1 / frequency^decay_power for an rfft2 grid, the DC term capped: (H, W//2 + 1)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay_power
    return torch.from_numpy(scale.astype(np.float32))


def decorrelate_color(image: torch.Tensor) -> torch.Tensor:
    """Map decorrelated colour channels to RGB: (N, 3, H, W) -> (N, 3, H, W)."""
    matrix = torch.from_numpy(COLOR_CORRELATION_NORMALIZED).to(image)
    return torch.einsum("ij,njhw->nihw", matrix, image)


class FourierImage:
    """A batch of images in the decorrelated Fourier basis. `spectrum` is the only tensor the optimiser sees."""

    def __init__(
        self,
        batch: int,
        size: tuple[int, int],
        generator: torch.Generator,
        *,
        sd: float = 0.01,
        decay_power: float = 1.0,
        device: torch.device | str = "cpu",
    ) -> None:
        height, width = size
        self.size = (height, width)
        shape = (batch, 3, height, width // 2 + 1, 2)
        # Drawn on the CPU from the caller's generator, so a seed gives the same start on every device.
        spectrum = torch.randn(shape, generator=generator) * sd
        self.spectrum = spectrum.to(device).requires_grad_(True)
        self.scale = spectrum_scale(height, width, decay_power).to(device)[None, None, :, :, None]

    def rgb(self) -> torch.Tensor:
        """The images in [0, 1]: (N, 3, H, W), attached to `spectrum`."""
        spectrum = torch.view_as_complex(self.scale * self.spectrum)
        image = torch.fft.irfftn(spectrum, s=self.size, dim=(2, 3), norm="ortho") / _FFT_MAGIC
        return torch.sigmoid(decorrelate_color(image))
