"""Fine-tuned heads: a state_dict for a listed architecture whose classifier has another number of outputs.

Fine-tuning a torchvision or timm network on your own classes replaces its last layer (resnet18's `fc`,
efficientnet's `classifier`, ...) by one with as many outputs as there are classes, and leaves the rest as
it was. `fit_head` finds that layer — timm's `get_classifier()`, otherwise the model's last Linear (or 1×1
convolution, as squeezenet's) — and, when the file's weights differ from the model's only in its number of
outputs, puts a layer of the file's size in its place so that the weights load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import nn


def fit_head(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """Resize `module`'s classifier in place to the output count of the file's weights for it; return a
    sentence saying so, or "" when nothing changed (no head, the same size, or other weights that do not fit:
    the caller's checks explain those)."""
    expected = module.state_dict()
    wrong = {key for key in expected if key in state_dict and state_dict[key].shape != expected[key].shape}
    name = classifier_name(module)
    if not wrong or name is None:
        return ""
    head = module.get_submodule(name)
    if not isinstance(head, (nn.Linear, nn.Conv2d)):  # classifier_name names only these
        return ""
    if not wrong <= {f"{name}.{param}" for param, _ in head.named_parameters(recurse=False)}:
        return ""
    weight, bias = state_dict.get(f"{name}.weight"), state_dict.get(f"{name}.bias")
    if weight is None or weight.dim() < 1:
        return ""
    outputs = int(weight.shape[0])
    fits = (
        outputs > 0
        and getattr(head, "groups", 1) == 1
        and weight.shape[1:] == head.weight.shape[1:]  # the same features in: only the class count differs
        and (bias is None) == (head.bias is None)
        and (bias is None or tuple(bias.shape) == (outputs,))
    )
    if not fits:
        return ""
    before = int(head.weight.shape[0])
    module.set_submodule(name, _resized(head, outputs))
    if isinstance(getattr(module, "num_classes", None), int):
        module.__dict__["num_classes"] = outputs  # timm models keep their class count; reset_classifier updates it too
    return (
        f"Its classifier '{name}' was resized from {before:,} to {outputs:,} outputs to fit your weights "
        "(a fine-tuned head)."
    )


def classifier_name(module: nn.Module) -> str | None:
    """The name of the model's classifier layer: timm's `get_classifier()`, else its last Linear layer, else its
    last convolution (squeezenet classifies with a 1×1 one); None if it has none of these."""
    names: dict[int, str] = {id(m): name for name, m in module.named_modules() if name}
    get_classifier = getattr(module, "get_classifier", None)
    if callable(get_classifier):
        head = get_classifier()
        if isinstance(head, (nn.Linear, nn.Conv2d)) and id(head) in names:
            return names[id(head)]
    for kinds in ((nn.Linear,), (nn.Conv2d,)):
        last: list[str] = [name for name, m in module.named_modules() if name and isinstance(m, kinds)]
        if last:
            return last[-1]
    return None


def _resized(head: nn.Linear | nn.Conv2d, outputs: int) -> nn.Module:
    """A layer like `head` with `outputs` outputs, on its device and dtype (its weights come from the file)."""
    device, dtype = head.weight.device, head.weight.dtype
    if isinstance(head, nn.Linear):
        return nn.Linear(head.in_features, outputs, bias=head.bias is not None, device=device, dtype=dtype)
    pair = tuple[int, int]  # a Conv2d's sizes are pairs; torch annotates them as tuple[int, ...]
    return nn.Conv2d(
        head.in_channels,
        outputs,
        cast(pair, head.kernel_size),
        stride=cast(pair, head.stride),
        padding=head.padding if isinstance(head.padding, str) else cast(pair, head.padding),
        dilation=cast(pair, head.dilation),
        bias=head.bias is not None,
        device=device,
        dtype=dtype,
    )
