"""Why a method does not apply to a model, a layer or a target, in one sentence (empty when it does): read from the
method's declared needs and layer kind, its own check (`Method.refuses`), the model's attention modules and whether
the model runs as TorchScript. The explainer asks before it computes anything."""

from __future__ import annotations

import torch

from . import attention
from .methods import METHODS
from .models.bundle import ModelBundle
from .targets import Target
from .tracing import Trace

TORCHSCRIPT_WAY_OUT = (
    "For every layer, upload the model as ONNX (torch.onnx.export(model, x, 'model.onnx')) or as a state_dict "
    "for a listed architecture, or open your Python model with `cnnvis serve`."
)


def refused(bundle: ModelBundle, method: str, trace: Trace, targets: tuple[Target, ...]) -> str:
    """The method's own check (`Method.refuses`), and for attention methods the model's modules themselves (a
    class merely named like a known attention is not one)."""
    cls = METHODS[method]
    if "attention" in cls.needs and (reason := attention.refusal(bundle.module)):
        return reason
    return cls.refuses(trace, targets)


def not_applicable(
    bundle: ModelBundle, method: str, trace: Trace, targets: tuple[Target, ...], layer: str | None
) -> str:
    """Why `method` does not apply here (empty when it does): from its needs, its own check (`refused`) and the
    kind of layer it declares."""
    cls = METHODS[method]
    if "guided_input_gradient" in cls.needs and runs_torchscript(bundle.module):
        return (
            "This model is TorchScript: its ReLUs run inside compiled code, where guided backpropagation cannot "
            f"reach their gradients. Vanilla saliency works on it. {TORCHSCRIPT_WAY_OUT}"
        )
    reason = refused(bundle, method, trace, targets)
    if reason or not cls.uses_layer:
        return reason
    if layer is None and runs_torchscript(bundle.module):
        return (
            f"This model is TorchScript: its layers run inside compiled code, out of the engine's sight, and "
            f"{cls.title} needs a layer. {TORCHSCRIPT_WAY_OUT}"
        )
    if layer is None:
        return f"This model has no layer that {cls.title} can use."
    info = trace.get(layer)
    if cls.layer in info.kinds:
        return ""
    if cls.layer == "conv":
        return f"'{layer}' is a {info.kind}, not a convolution, so it has no kernels to show."
    if info.layout.reason and len(info.shape) >= 2:
        return (
            f"'{layer}' outputs {'×'.join(map(str, info.shape))}, which is not a map: {info.layout.reason}. "
            f"{cls.title} needs a layer whose output forms a picture; pick another layer."
        )
    return (
        f"'{layer}' outputs shape {'×'.join(map(str, info.shape)) or 'no tensor'}, not a spatial feature map, "
        f"so {cls.title} cannot use it; pick a layer with channels × height × width."
    )


def runs_torchscript(module: torch.nn.Module) -> bool:
    """A ScriptModule, or an uploaded TorchScript model run in its worker (models.contained): layers and ReLUs
    out of the engine's sight."""
    return isinstance(module, torch.jit.ScriptModule) or bool(getattr(module, "runs_torchscript", False))
