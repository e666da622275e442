"""Plans the passes for a set of methods and runs each pass once.

One forward pass per image records every layer (the trace, the prediction, feature maps and CAM all come
from it) and keeps the autograd graph, so a new target class or a new Grad-CAM layer needs only a backward
pass. Gradient methods share backward passes: one plain pass serves saliency and every layer gradient, one
guided pass serves guided backprop and guided Grad-CAM. Gradients are taken with `torch.autograd.grad`, so
parameters' `.grad` are never touched.

Thread safety: module hooks exist only inside a forward pass, which holds the bundle's lock; the backward
passes of one recorded forward pass hold that pass's own lock (its guided switch is per pass).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import EngineError, MethodError, ModelError
from .hooks import Capture, GuidedSwitch, ModuleCall, capture
from .images import DecodedImage, decode_image
from .methods import METHODS, MethodInputs, MethodResult
from .models.bundle import ModelBundle
from .targets import ClassTarget, RegressionTarget, Target, resolve_target
from .tracing import LayerInfo, Trace, build_trace

ALL_METHODS = ("feature_maps", "kernels", "saliency", "guided_backprop", "cam", "gradcam", "guided_gradcam")
ImageSource = Any  # PIL image, bytes, path or DecodedImage


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float  # softmax for classes, sigmoid for regression outputs, pixel share for segments


@dataclass(frozen=True)
class Explanation(Mapping[str, MethodResult]):
    """The results of one `explain` call, by method name, with what they explain."""

    results: Mapping[str, MethodResult]
    predictions: tuple[Prediction, ...]
    target: Target
    layer: str | None  # the layer the layer-based methods used
    image: np.ndarray  # (H, W, 3) uint8: the input as the model saw it
    model: str
    notes: tuple[str, ...] = ()

    def __getitem__(self, method: str) -> MethodResult:
        return self.results[method]

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


@dataclass
class _ForwardPass:
    """One recorded forward pass with its graph kept for later backward passes."""

    x: torch.Tensor  # (1, 3, H, W), requires grad
    output: torch.Tensor
    calls: dict[str, list[ModuleCall]]
    trace: Trace
    image: np.ndarray
    notes: tuple[str, ...]
    guided: GuidedSwitch
    stale: frozenset[str] = frozenset()  # recorded outputs overwritten in place afterwards
    cloned: frozenset[str] = frozenset()  # outputs recorded through a clone, so they stay true
    lock: threading.Lock = field(default_factory=threading.Lock)
    gradients: dict[tuple, torch.Tensor] = field(default_factory=dict)

    def activation(self, layer: str) -> torch.Tensor:
        """The layer's output at its last call, attached to the graph: (1, C, h, w)."""
        return max(self.calls[layer], key=lambda c: c.end).output


class Explainer:
    """Explains one model's predictions. Safe to share between threads.

    `cache_size` recorded forward passes (images) are kept with their graphs; each costs about the memory
    of one training step's activations.
    """

    def __init__(self, bundle: ModelBundle, *, cache_size: int = 2) -> None:
        self.bundle = bundle
        self.cache_size = cache_size
        self._passes: OrderedDict[str, _ForwardPass] = OrderedDict()
        self._functional: dict[tuple[int, ...], dict[str, int]] = {}  # per input shape, counted once

    # ----- public API -------------------------------------------------------------------------------
    def trace(self, image: ImageSource) -> Trace:
        return self._forward(image).trace

    def layers(self, image: ImageSource, method: str | None = None) -> list[LayerInfo]:
        """The layers `image` passed through, in execution order; only those valid for `method` if given."""
        trace = self.trace(image)
        return list(trace.layers) if method is None else trace.for_method(method)

    def predict(self, image: ImageSource, top_k: int = 5) -> tuple[Prediction, ...]:
        return self._predictions(self._forward(image).output.detach(), top_k)

    def explain(
        self,
        image: ImageSource,
        *,
        layer: str | None = None,
        target: int | Target | None = None,
        methods: Iterable[str] = ALL_METHODS,
        layers: Mapping[str, str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        top_k: int = 5,
    ) -> Explanation:
        """Compute `methods` for one image, layer and target with shared passes.

        `layer` serves the layer-based methods (feature maps, kernels, Grad-CAM); `layers` overrides it per
        method; None picks each method's default. CAM always uses the global pool's input. `target` is a
        class index, a Target, or None for the top-1 class. Methods that do not apply come back with a
        `reason` instead of a map; errors that concern the whole call raise an EngineError.
        """
        methods = list(dict.fromkeys(methods))
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise MethodError(f"Unknown method '{unknown[0]}'. Available methods: {', '.join(METHODS)}.")
        fp = self._forward(image)
        with fp.lock:
            chosen = {m: self._layer_for(m, fp.trace, layer, layers or {}) for m in methods}
            self._refresh(fp, {name for m, name in chosen.items() if name and METHODS[m].needs & {"activation", "cam"}})
            resolved = resolve_target(target, fp.output, self.bundle.task, self.bundle.class_names)
            score = resolved.score(fp.output)[0]
            plain = [
                chosen[m] if need == "layer_gradient" else "input"
                for m in methods
                if not self._not_applicable(m, fp.trace, resolved, chosen[m])
                for need in METHODS[m].needs & {"layer_gradient", "input_gradient"}
            ]
            self._merged_plain_pass(fp, resolved, score, plain)
            results = {
                m: self._run(m, fp, resolved, score, chosen[m], (options or {}).get(m, {})) for m in methods
            }
        main_layer = layer or next((chosen[m] for m in methods if METHODS[m].uses_layer and chosen[m]), None)
        return Explanation(
            results=results,
            predictions=self._predictions(fp.output.detach(), top_k),
            target=resolved,
            layer=main_layer,
            image=fp.image,
            model=self.bundle.name,
            notes=fp.notes,
        )

    # ----- forward ----------------------------------------------------------------------------------
    def _forward(self, image: ImageSource) -> _ForwardPass:
        decoded = image if isinstance(image, DecodedImage) else decode_image(image)
        with self.bundle.lock:
            cached = self._passes.get(decoded.sha256)
            if cached is not None:
                self._passes.move_to_end(decoded.sha256)
                return cached
            display, tensor = self.bundle.prepare(decoded.image)
            x = tensor[None].to(self.bundle.device).requires_grad_(True)
            guided = GuidedSwitch()
            output, record = self._record(x, frozenset(), guided)
            fp = _ForwardPass(
                x=x,
                output=output,
                calls=record.by_name(),
                trace=build_trace(record, output.detach(), self._functional[tuple(x.shape)]),
                image=display,
                notes=decoded.notes,
                guided=guided,
                stale=frozenset(record.overwritten()),
            )
            self._passes[decoded.sha256] = fp
            while len(self._passes) > self.cache_size:
                self._passes.popitem(last=False)
            return fp

    def _record(
        self, x: torch.Tensor, clone: frozenset[str], guided: GuidedSwitch
    ) -> tuple[torch.Tensor, Capture]:
        """One forward pass with every module call recorded (under the bundle's lock: hooks are global)."""
        count = tuple(x.shape) not in self._functional
        with self.bundle.lock:
            try:
                with torch.enable_grad(), capture(
                    self.bundle.module, clone_outputs=clone, guided=guided, count_functional=count
                ) as record:
                    output = self.bundle.module(x)
            except EngineError:
                raise
            except Exception as error:  # the model itself failed on this input
                first_line = (str(error).splitlines() or [type(error).__name__])[0]
                raise ModelError(f"The model {self.bundle.name} failed on this image: {first_line}") from error
            if count:
                self._functional[tuple(x.shape)] = dict(record.functional_activations)
        if isinstance(output, (tuple, list)):
            output = output[0]
        return output, record

    def _refresh(self, fp: _ForwardPass, layers: set[str]) -> None:
        """Record again, cloning `layers` whose outputs a later in-place operation overwrote (for example a
        BatchNorm followed by ReLU(inplace=True)), so their true values and gradients can be had. Only such
        layers ever cost a second forward pass; the pass is then kept for later calls."""
        needed = layers & fp.stale
        if not needed:
            return
        clone = fp.cloned | needed
        output, record = self._record(fp.x, clone, fp.guided)
        fp.output, fp.calls, fp.cloned = output, record.by_name(), clone
        fp.stale = frozenset(record.overwritten()) - clone

    # ----- backward ---------------------------------------------------------------------------------
    def _gradient(self, fp: _ForwardPass, target: Target, score: torch.Tensor, what: str) -> torch.Tensor:
        """d score / d `what` ("input", "guided" input, or a layer name), cached per pass and target."""
        key = (_hashable(target), what)
        if key in fp.gradients:
            return fp.gradients[key]
        if what == "guided":
            fp.guided.on = True
            try:
                (grad,) = torch.autograd.grad(score, fp.x, retain_graph=True)
            finally:
                fp.guided.on = False
        else:
            source = fp.x if what == "input" else fp.activation(what)
            (grad,) = torch.autograd.grad(score, source, retain_graph=True, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(source)
        grad = grad.detach()[0]
        if key[0] is not None:
            fp.gradients[key] = grad
        return grad

    def _merged_plain_pass(self, fp: _ForwardPass, target: Target, score: torch.Tensor, wanted: list[str]) -> None:
        """One plain backward pass for every still-missing plain gradient (input and layers) at once."""
        tkey = _hashable(target)
        missing = [w for w in dict.fromkeys(wanted) if (tkey, w) not in fp.gradients]
        if len(missing) < 2 or tkey is None:
            return
        sources = [fp.x if w == "input" else fp.activation(w) for w in missing]
        grads = torch.autograd.grad(score, sources, retain_graph=True, allow_unused=True)
        for w, source, grad in zip(missing, sources, grads):
            fp.gradients[(tkey, w)] = (torch.zeros_like(source) if grad is None else grad).detach()[0]

    # ----- methods ----------------------------------------------------------------------------------
    def _layer_for(self, method: str, trace: Trace, layer: str | None, layers: Mapping[str, str]) -> str | None:
        if method == "cam":
            return trace.cam_site.layer if trace.cam_site else None
        if not METHODS[method].uses_layer:
            return None
        name = layers.get(method) or layer
        if name is None:
            return trace.default_layer(method)
        trace.get(name)  # raises LayerError for an unknown name
        return name

    def _run(
        self, method: str, fp: _ForwardPass, target: Target, score: torch.Tensor, layer: str | None, options: Mapping
    ) -> MethodResult:
        cls = METHODS[method]
        reason = self._not_applicable(method, fp.trace, target, layer)
        if reason:
            return MethodResult.not_applicable(method, reason, layer)
        inputs = MethodInputs(
            layer=layer,
            module=self.bundle.module.get_submodule(layer) if layer else None,
            input_size=tuple(fp.x.shape[2:]),
            target=target,
            options=options,
        )
        if layer is not None and fp.calls[layer][0].output is not None and fp.activation(layer).dim() == 4:
            inputs.activation = fp.activation(layer).detach()[0]
            if len(fp.calls[layer]) > 1:
                inputs.meta["calls"] = f"'{layer}' runs {len(fp.calls[layer])} times; its last run is shown."
        if "layer_gradient" in cls.needs:
            inputs.layer_gradient = self._gradient(fp, target, score, layer)
        if "input_gradient" in cls.needs:
            inputs.input_gradient = self._gradient(fp, target, score, "input")
        if "guided_input_gradient" in cls.needs:
            inputs.guided_input_gradient = self._gradient(fp, target, score, "guided")
            inputs.meta["unguided"] = fp.trace.unguided
        if "cam" in cls.needs:
            linear = self.bundle.module.get_submodule(fp.trace.cam_site.linear)
            rows = [target.index] if isinstance(target, ClassTarget) else list(target.outputs or range(linear.out_features))
            inputs.cam_weights = linear.weight.detach()[rows].sum(dim=0)
            inputs.cam_bias = float(linear.bias.detach()[rows].sum()) if linear.bias is not None else 0.0
        return cls().compute(inputs)

    @staticmethod
    def _not_applicable(method: str, trace: Trace, target: Target, layer: str | None) -> str:
        if method == "cam":
            if trace.cam_site is None:
                return trace.cam_reason
            if not isinstance(target, (ClassTarget, RegressionTarget)):
                return "CAM weighs feature maps by one output's Linear weights, so it explains classes and outputs, not segmentation regions."
            return ""
        if not METHODS[method].uses_layer:
            return ""
        if layer is None:
            return f"This model has no layer that {METHODS[method].title} can use."
        info = trace.get(layer)
        if method not in info.methods:
            if method == "kernels":
                return f"'{layer}' is a {info.kind}, not a convolution, so it has no kernels to show."
            return (
                f"'{layer}' outputs shape {'×'.join(map(str, info.shape)) or 'no tensor'}, not a spatial feature map, "
                f"so {METHODS[method].title} cannot use it; pick a layer with channels × height × width."
            )
        return ""

    def _predictions(self, output: torch.Tensor, top_k: int) -> tuple[Prediction, ...]:
        names = self.bundle.output_names or self.bundle.class_names
        if self.bundle.task == "segmentation":
            labels = output.argmax(dim=1) if output.shape[1] > 1 else (output[:, 0] > 0).long()
            counts = torch.bincount(labels.flatten(), minlength=max(output.shape[1], 2)).float()
            scores = counts / counts.sum()
        elif self.bundle.task == "regression":
            scores = torch.sigmoid(output[0].flatten())
        else:
            scores = torch.softmax(output[0].flatten().float(), dim=0)
        values, indices = scores.topk(min(top_k, scores.numel()))
        return tuple(
            Prediction(int(i), names[int(i)] if int(i) < len(names) else f"class {int(i)}", float(v))
            for v, i in zip(values, indices)
        )


def _hashable(target: Target) -> Any:
    try:
        hash(target)
    except TypeError:
        return None
    return target

