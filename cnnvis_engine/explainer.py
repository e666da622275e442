"""Plans the passes for a set of methods and runs each pass once.

One forward pass per image records every layer (the trace, the prediction, feature maps and CAM all come
from it) and keeps the autograd graph, so a new target class or a new Grad-CAM layer needs only a backward
pass. Gradient methods share backward passes: one plain pass serves saliency and every layer gradient, one
guided pass serves guided backprop and guided Grad-CAM. Gradients are taken with `torch.autograd.grad`, so
parameters' `.grad` are never touched. A batch goes through the same passes at once (`explain_batch`).

`explain` keeps each image's pass (`cache_size` of them). `explain_batch`'s pass serves that call only, so
once the input shape has been traced it records just the layers its methods use, with a graph that starts
at the first layer whose gradient they take (`_lean_pass`).

Thread safety: the recording wrappers and hooks exist only inside a forward pass, which holds the bundle's
lock; the backward passes of one recorded forward pass hold that pass's own lock (guided backprop hooks
that pass's graph).
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import EngineError, ImageError, MethodError, ModelError, TargetError
from .hooks import Capture, ModuleCall, capture, guided_backward, node_gradient
from .images import DecodedImage, decode_image
from .methods import METHODS, MethodInputs, MethodResult
from .models.bundle import ModelBundle
from .targets import ClassTarget, Target, resolve_target
from .tracing import LayerInfo, Trace, build_trace

# The article's seven methods: what `explain` computes unless told otherwise.
ARTICLE_METHODS = ("feature_maps", "kernels", "saliency", "guided_backprop", "cam", "gradcam", "guided_gradcam")
# Bounds on one explain_batch call: its results (each image and its maps, ~1 MB at 224×224 for a few methods) are
# all returned at once, so at most MAX_BATCH images; they go through the model BATCH_CHUNK at a time, so the
# recorded pass (every layer's output and the graph: ~30 MB per image on resnet50) stays bounded.
MAX_BATCH = 1024
BATCH_CHUNK = 32
MAX_METHOD_NAMES = 1000  # names read from one `methods` argument (an endless generator stops here)
ImageSource = Any  # PIL image, bytes, path or DecodedImage
TORCHSCRIPT_WAY_OUT = (
    "For every layer, upload the model as ONNX (torch.onnx.export(model, x, 'model.onnx')) or as a state_dict "
    "for a listed architecture, or open your Python model with `cnnvis serve`."
)
TargetSpec = int | Target | None


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float  # softmax for classes, sigmoid for regression outputs, pixel share for segments


@dataclass(frozen=True)
class Explanation(Mapping[str, MethodResult]):
    """The results of one image's explanation, by method name, with what they explain."""

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
    """One recorded forward pass of N images, its graph kept for later backward passes."""

    x: torch.Tensor  # (N, 3, H, W), requires grad
    output: torch.Tensor
    calls: dict[str, list[ModuleCall]]
    trace: Trace
    images: list[np.ndarray]
    notes: list[tuple[str, ...]]
    graph: bool = True  # kept its autograd graph (False: a batch whose methods take no gradient from it)
    stale: frozenset[str] = frozenset()  # recorded outputs overwritten in place afterwards
    cloned: frozenset[str] = frozenset()  # outputs recorded through a clone, so they stay true
    lock: threading.Lock = field(default_factory=threading.Lock)
    gradients: dict[tuple, torch.Tensor] = field(default_factory=dict)
    recomputed: dict[str, torch.Tensor] = field(default_factory=dict)  # true values of stale outputs

    def last_call(self, layer: str) -> ModuleCall:
        return max(self.calls[layer], key=lambda c: c.end)

    def activation(self, layer: str) -> torch.Tensor:
        """The layer's recorded output at its last call, attached to the graph: (N, C, h, w). For a layer in
        `stale` its values were overwritten in place; use `Explainer._value` and `_gradient` for those."""
        return self.last_call(layer).output


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
        self._traces: OrderedDict[tuple, Trace] = OrderedDict()  # by the order the modules ran in; see _trace
        self._latest_trace: dict[tuple[int, ...], tuple] = {}  # input shape -> key of its latest trace

    # ----- public API -------------------------------------------------------------------------------
    def trace(self, image: ImageSource) -> Trace:
        return self._cached_pass(image).trace

    def layers(self, image: ImageSource, method: str | None = None) -> list[LayerInfo]:
        """The layers `image` passed through, in execution order; only those valid for `method` if given."""
        trace = self.trace(image)
        return list(trace.layers) if method is None else trace.for_method(_methods([method])[0])

    def predict(self, image: ImageSource, top_k: int = 5) -> tuple[Prediction, ...]:
        _check_top_k(top_k)
        return self._predictions(self._cached_pass(image).output.detach(), top_k)[0]

    def explain(
        self,
        image: ImageSource,
        *,
        layer: str | None = None,
        target: TargetSpec = None,
        methods: Iterable[str] = ARTICLE_METHODS,
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
        names = _methods(methods)
        _check_top_k(top_k)
        fp = self._cached_pass(image)
        return self._explain(fp, [target], names, layer, layers, options, top_k)[0]

    def explain_batch(
        self,
        images: Sequence[ImageSource] | torch.Tensor,
        *,
        layer: str | None = None,
        targets: TargetSpec | Sequence[TargetSpec] = None,
        methods: Iterable[str] = ("gradcam",),
        layers: Mapping[str, str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        top_k: int = 5,
    ) -> list[Explanation]:
        """`explain` for a whole batch at once on the model's device: one forward pass and shared backward
        passes for all images, no per-image loop. `targets` is one spec for all or one per image. The
        layers are traced on the batch. Results equal `explain` per image. `images` may also be a ready model
        input (N, 3, H, W), normalised as `bundle.prepare` does, already on the model's device or not.
        At most MAX_BATCH images; they are decoded and run BATCH_CHUNK at a time (the results equal one pass
        over all of them up to float rounding)."""
        if not isinstance(images, torch.Tensor):
            images = list(images)
        if len(images) == 0:
            raise ImageError("The batch is empty: give at least one image.")
        if len(images) > MAX_BATCH:
            raise ImageError(
                f"The batch has {len(images):,} images; one call explains at most {MAX_BATCH:,}, so give them in "
                "several calls."
            )
        per_image = list(targets) if isinstance(targets, Sequence) else [targets] * len(images)
        if len(per_image) != len(images):
            raise TargetError(f"There are {len(images)} images but {len(per_image)} targets; give one target per image.")
        names = _methods(methods)
        _check_top_k(top_k)
        if isinstance(images, torch.Tensor):
            self._check_tensor(images)  # shape and finite values, before the first chunk runs
        results: list[Explanation] = []
        for start in range(0, len(images), BATCH_CHUNK):
            chunk = slice(start, start + BATCH_CHUNK)
            results += self._explain_chunk(images[chunk], per_image[chunk], names, layer, layers, options, top_k)
        return results

    def _explain_chunk(
        self, images: list[ImageSource] | torch.Tensor, per_image: list[TargetSpec], names: list[str],
        layer: str | None, layers: Mapping[str, str] | None, options: Mapping[str, Mapping[str, Any]] | None,
        top_k: int,
    ) -> list[Explanation]:
        """`explain_batch` for at most BATCH_CHUNK images: one forward pass, shared backward passes."""
        needs = frozenset().union(*(METHODS[m].needs for m in names))
        if isinstance(images, torch.Tensor):
            x, displays, notes = self._tensor_input(images)
        else:
            x, displays, notes = self._image_input([_decode(image) for image in images])
        fp = None
        if not needs & _INPUT_GRADIENT_NEEDS:
            fp = self._lean_pass(x, displays, notes, names, layer, layers or {})
        if fp is None:  # nothing to keep the graph for if no method takes a gradient from this pass
            fp = self._pass(x, displays, notes, graph=bool(needs & _GRADIENT_NEEDS))
        return self._explain(fp, per_image, names, layer, layers, options, top_k)

    # ----- forward ----------------------------------------------------------------------------------
    def _cached_pass(self, image: ImageSource) -> _ForwardPass:
        decoded = _decode(image)
        with self.bundle.lock:
            cached = self._passes.get(decoded.sha256)
            if cached is not None:
                self._passes.move_to_end(decoded.sha256)
                return cached
            fp = self._pass(*self._image_input([decoded]))
            self._passes[decoded.sha256] = fp
            while len(self._passes) > self.cache_size:
                self._passes.popitem(last=False)
            return fp

    def _image_input(self, decoded: list[DecodedImage]) -> tuple[torch.Tensor, list[np.ndarray], list[tuple[str, ...]]]:
        """The model input, the images as the model sees them and their decoding notes."""
        displays = [self.bundle.resize(d.image) for d in decoded]
        x = self.bundle.normalization.apply(np.stack(displays), self.bundle.device)
        return x, displays, [d.notes for d in decoded]

    def _tensor_input(self, x: torch.Tensor) -> tuple[torch.Tensor, list[np.ndarray], list[tuple[str, ...]]]:
        self._check_tensor(x)
        x = x.detach().to(self.bundle.device, torch.float32)
        return x.clone(), list(self.bundle.normalization.invert(x)), [()] * len(x)

    def _check_tensor(self, x: torch.Tensor) -> None:
        """A ready batch must have the model's input shape and hold only finite values: a NaN would be traced (CAM
        then judged from NaN outputs) before anything could notice."""
        expected = (self.bundle.channels, *self.bundle.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected or not x.is_floating_point():
            raise ImageError(
                f"A ready batch must be a float tensor of shape (N, {', '.join(map(str, expected))}); got {tuple(x.shape)}."
            )
        finite = torch.isfinite(x.detach()).flatten(1).all(dim=1)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite).flatten().tolist()
            which = f"image {bad[0]}" if len(bad) == 1 else f"{len(bad)} images (the first is image {bad[0]})"
            raise ImageError(
                f"The batch holds NaN or infinite values in {which}, so it cannot be explained; nothing was run."
            )

    def _pass(
        self, x: torch.Tensor, displays: list[np.ndarray], notes: list[tuple[str, ...]], graph: bool = True
    ) -> _ForwardPass:
        """A whole recorded pass: every layer's output, and the graph from the input on if `graph`."""
        x = x.requires_grad_(graph)
        output, record = self._record(x, graph)
        return _ForwardPass(
            x=x,
            output=output,
            calls=record.by_name(),
            trace=self._trace(x, output, record),
            images=displays,
            notes=notes,
            graph=graph,
            stale=frozenset(record.overwritten()),
        )

    def _lean_pass(
        self, x: torch.Tensor, displays: list[np.ndarray], notes: list[tuple[str, ...]], methods: list[str],
        layer: str | None, layers: Mapping[str, str],
    ) -> _ForwardPass | None:
        """A pass for `explain_batch`, which never serves another call, for methods that take no gradient to the
        input: it keeps only the outputs of the layers they use, and its graph starts at the first of those
        whose gradient they take (`capture`'s `keep` and `grad_from`). On resnet50 that is a forward pass
        without gradients up to `layer4`: Grad-CAM alone about a sixth faster than a whole recorded pass.
        It takes the layer list from an earlier whole pass of this input shape; None (a whole pass is needed)
        when there was none, or when the model ran other modules this time."""
        key = self._latest_trace.get(tuple(x.shape[1:]))
        trace = self._traces.get(key) if key else None
        if trace is None:
            return None
        chosen = {m: self._layer_for(m, trace, layer, layers) for m in methods}
        kept = frozenset(name for name in chosen.values() if name)
        grad_from = frozenset(chosen[m] for m in methods if chosen[m] and "layer_gradient" in METHODS[m].needs)
        output, record = self._record(x, False, keep=kept, grad_from=grad_from, clone_outputs=kept - grad_from)
        if self._trace_key(x, record) != key or (grad_from and output.grad_fn is None):
            return None
        return _ForwardPass(
            x=x,
            output=output,
            calls=record.by_name(),
            trace=trace,
            images=displays,
            notes=notes,
            graph=bool(grad_from),
            stale=frozenset(record.overwritten()),
            cloned=kept,
        )

    @staticmethod
    def _trace_key(x: torch.Tensor, record: Capture) -> tuple:
        return tuple(x.shape[1:]), tuple(id(call.module) for call in record.calls)

    def _trace(self, x: torch.Tensor, output: torch.Tensor, record: Capture) -> Trace:
        """The layer list of a recorded pass. Images of one shape that run the same modules in the same nesting
        (every image, for a CNN without data-dependent branches) share one Trace: building it is pure Python
        over every call, and checking the call order is a fraction of that."""
        key = self._trace_key(x, record)
        with self.bundle.lock:
            trace = self._traces.get(key)
            if trace is None:
                trace = build_trace(record, output.detach(), self._functional[key[0]])
                if not bool(torch.isfinite(output.detach()).all()):  # judged from NaN, it must not serve others
                    return trace
                self._traces[key] = trace
                while len(self._traces) > 4:
                    self._traces.popitem(last=False)
            self._latest_trace[key[0]] = key
        return trace

    def _record(self, x: torch.Tensor, graph: bool, **options: Any) -> tuple[torch.Tensor, Capture]:
        """One forward pass with module calls recorded (`capture`'s `options`), under the bundle's lock (no
        other thread's pass may run through the recording), with its autograd graph if `graph`."""
        shape = tuple(x.shape[1:])
        with self.bundle.lock:
            count = shape not in self._functional
            try:
                with torch.set_grad_enabled(graph), capture(
                    self.bundle.module, count_functional=count, **options
                ) as record:
                    output = self.bundle.module(x)
            except EngineError:
                raise
            except Exception as error:  # the model itself failed on this input
                first_line = (str(error).splitlines() or [type(error).__name__])[0]
                raise ModelError(f"The model {self.bundle.name} failed on this image: {first_line}") from error
            if count:
                self._functional[shape] = dict(record.functional_activations)
        if isinstance(output, (tuple, list)):
            output = output[0]
        return output, record

    def _refresh(self, fp: _ForwardPass, layers: set[str]) -> None:
        """Record again, cloning those `layers` whose outputs were overwritten in place and cannot be recovered
        from their module's input (a module with several inputs, or whose input was overwritten too).
        Outputs overwritten behind a BatchNorm's back by ReLU(inplace=True) or `out += identity` are
        recoverable, so the usual layers never cost another forward pass."""
        needed = {name for name in layers & fp.stale if not fp.last_call(name).recoverable(fp.graph)}
        if not needed:
            return
        clone = fp.cloned | needed
        output, record = self._record(fp.x, fp.graph, clone_outputs=clone)
        fp.output, fp.calls, fp.cloned = output, record.by_name(), clone
        fp.stale = frozenset(record.overwritten()) - clone

    def _forward_fn(self, x: torch.Tensor, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """An extra forward pass for methods that need one (perturbed or noisy inputs): the model's output and,
        if `layer` is named, that layer's true output (last call), both attached to the graph when grad is on.
        Holds the bundle's lock, so no other thread's hooks can fire in it."""
        x = x.to(self.bundle.device)
        if layer is None:
            return self.bundle.run(x), None
        with self.bundle.lock, capture(self.bundle.module, clone_outputs={layer}, only={layer}) as record:
            output = self.bundle.run(x)
        return output, max(record.calls, key=lambda c: c.end).output

    # ----- one explanation --------------------------------------------------------------------------
    def _explain(
        self,
        fp: _ForwardPass,
        target_specs: list[TargetSpec],
        methods: list[str],
        layer: str | None,
        layers: Mapping[str, str] | None,
        options: Mapping[str, Mapping[str, Any]] | None,
        top_k: int,
    ) -> list[Explanation]:
        with fp.lock:
            chosen = {m: self._layer_for(m, fp.trace, layer, layers or {}) for m in methods}
            self._refresh(fp, {name for m, name in chosen.items() if name and METHODS[m].needs & {"activation", "cam"}})
            targets = tuple(
                resolve_target(spec, fp.output[i:i + 1], self.bundle.task, self.bundle.class_names)
                for i, spec in enumerate(target_specs)
            )
            score = _total_score(targets, fp.output)
            reasons = {m: self._not_applicable(m, fp.trace, targets, chosen[m]) for m in methods}
            plain = [
                chosen[m] if need == "layer_gradient" else "input"
                for m in methods
                if not reasons[m]
                for need in METHODS[m].needs & {"layer_gradient", "input_gradient"}
            ]
            self._plain_pass(fp, targets, score, plain)
            per_method = {
                m: (
                    [MethodResult.not_applicable(m, reasons[m], chosen[m])] * len(targets)
                    if reasons[m]
                    else self._run(m, fp, targets, score, chosen[m], (options or {}).get(m, {}))
                )
                for m in methods
            }
        predictions = self._predictions(fp.output.detach(), top_k)
        main_layer = layer or next((chosen[m] for m in methods if METHODS[m].uses_layer and chosen[m]), None)
        return [
            Explanation(
                results={m: per_method[m][i] for m in methods},
                predictions=predictions[i],
                target=targets[i],
                layer=main_layer,
                image=fp.images[i],
                model=self.bundle.name,
                notes=fp.notes[i],
            )
            for i in range(len(targets))
        ]

    # ----- backward ---------------------------------------------------------------------------------
    def _gradient(self, fp: _ForwardPass, targets: tuple[Target, ...], score: torch.Tensor, what: str) -> torch.Tensor:
        """d score / d `what` ("input", "guided" input, or a layer name), cached per pass and targets."""
        key = (_hashable(targets), what)
        if key in fp.gradients:
            return fp.gradients[key]
        if what == "guided":
            with guided_backward(call for calls in fp.calls.values() for call in calls):
                (grad,) = torch.autograd.grad(score, fp.x, retain_graph=True)
        elif what in fp.stale:  # the output was overwritten: catch its gradient where its graph node gets it
            call = fp.last_call(what)
            with node_gradient(call) as caught:
                torch.autograd.grad(score, call.first_input, retain_graph=True, allow_unused=True)
            grad = caught[0] if caught else torch.zeros_like(call.output)
        else:
            source = fp.x if what == "input" else fp.activation(what)
            (grad,) = torch.autograd.grad(score, source, retain_graph=True, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(source)
        grad = grad.detach()
        if key[0] is not None:
            fp.gradients[key] = grad
        return grad

    def _plain_pass(self, fp: _ForwardPass, targets: tuple[Target, ...], score: torch.Tensor, wanted: list[str]) -> None:
        """One plain backward pass for every still-missing plain gradient (input and layers) at once."""
        tkey = _hashable(targets)
        missing = [w for w in dict.fromkeys(wanted) if (tkey, w) not in fp.gradients and w not in fp.stale]
        if len(missing) < 2 or tkey is None:
            return
        sources = [fp.x if w == "input" else fp.activation(w) for w in missing]
        grads = torch.autograd.grad(score, sources, retain_graph=True, allow_unused=True)
        for w, source, grad in zip(missing, sources, grads):
            fp.gradients[(tkey, w)] = (torch.zeros_like(source) if grad is None else grad).detach()

    # ----- methods ----------------------------------------------------------------------------------
    def _layer_for(self, method: str, trace: Trace, layer: str | None, layers: Mapping[str, str]) -> str | None:
        """The layer `method` runs at: the caller's (per method, else the common one) for methods that take one,
        else the default of the kind of layer it declares (the CAM site; none)."""
        kind = METHODS[method].layer
        name = (layers.get(method) or layer) if METHODS[method].uses_layer else None
        if name is None:
            return trace.default_of_kind(kind)
        trace.get(name)  # raises LayerError for an unknown name
        return name

    def _run(
        self, method: str, fp: _ForwardPass, targets: tuple[Target, ...], score: torch.Tensor, layer: str | None,
        options: Mapping,
    ) -> list[MethodResult]:
        cls = METHODS[method]
        inputs = MethodInputs(
            layer=layer,
            module=self.bundle.module.get_submodule(layer) if layer and "module" in cls.needs else None,
            input_size=tuple(fp.x.shape[2:]),
            targets=targets,
            x=fp.x.detach(),
            output=fp.output.detach(),
            options=options,
        )
        if layer is not None and cls.needs & {"activation", "layer_gradient", "cam"}:
            inputs.activation = self._value(fp, layer)
            if len(fp.calls[layer]) > 1:
                inputs.meta["calls"] = f"'{layer}' runs {len(fp.calls[layer])} times; its last run is shown."
        if "layer_gradient" in cls.needs:
            inputs.layer_gradient = self._gradient(fp, targets, score, layer)
        if "input_gradient" in cls.needs:
            inputs.input_gradient = self._gradient(fp, targets, score, "input")
        if "guided_input_gradient" in cls.needs:
            inputs.guided_input_gradient = self._gradient(fp, targets, score, "guided")
            inputs.meta["unguided"] = fp.trace.unguided
        if "cam" in cls.needs:
            inputs.cam_weights, inputs.cam_bias = self._cam_weights(fp.trace, targets)
        if "forward" in cls.needs:
            inputs.forward = self._forward_fn
        return cls().compute(inputs).results(method, layer, len(targets))

    def _value(self, fp: _ForwardPass, layer: str) -> torch.Tensor:
        """The layer's true output, detached. One overwritten in place is recomputed from its own input by its
        module alone (under the lock: other threads' hooks must not see this call), once per pass."""
        if layer not in fp.stale:
            return fp.activation(layer).detach()
        if layer not in fp.recomputed:
            call = fp.last_call(layer)
            with self.bundle.lock, torch.no_grad():
                fp.recomputed[layer] = call.module(call.first_input.detach())
        return fp.recomputed[layer]

    def _cam_weights(self, trace: Trace, targets: tuple[Target, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample, the Linear's weight rows (N, C) and biases (N,) of the target's outputs."""
        linear = self.bundle.module.get_submodule(trace.cam_site.linear)
        weight = linear.weight.detach()
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros(weight.shape[0], device=weight.device)
        rows = [
            [t.index] if isinstance(t, ClassTarget) else list(t.outputs or range(weight.shape[0])) for t in targets
        ]
        return (
            torch.stack([weight[r].sum(dim=0) for r in rows]),
            torch.stack([bias[r].sum() for r in rows]),
        )

    def _not_applicable(self, method: str, trace: Trace, targets: tuple[Target, ...], layer: str | None) -> str:
        """Why `method` does not apply here (empty when it does): from its needs, its own check (`Method.refuses`)
        and the kind of layer it declares."""
        cls = METHODS[method]
        if "guided_input_gradient" in cls.needs and _runs_torchscript(self.bundle.module):
            return (
                "This model is TorchScript: its ReLUs run inside compiled code, where guided backpropagation cannot "
                f"reach their gradients. Vanilla saliency works on it. {TORCHSCRIPT_WAY_OUT}"
            )
        reason = cls.refuses(trace, targets)
        if reason or not cls.uses_layer:
            return reason
        if layer is None and _runs_torchscript(self.bundle.module):
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
        return (
            f"'{layer}' outputs shape {'×'.join(map(str, info.shape)) or 'no tensor'}, not a spatial feature map, "
            f"so {cls.title} cannot use it; pick a layer with channels × height × width."
        )

    def _predictions(self, output: torch.Tensor, top_k: int) -> list[tuple[Prediction, ...]]:
        """Top-k per image: softmax for classes, sigmoid per output for regression, pixel share per segment."""
        names = self.bundle.output_names or self.bundle.class_names
        if self.bundle.task == "segmentation":
            classes = max(output.shape[1], 2)
            labels = output.argmax(dim=1) if output.shape[1] > 1 else (output[:, 0] > 0).long()
            scores = torch.nn.functional.one_hot(labels.flatten(1), classes).float().mean(dim=1)
        elif self.bundle.task == "regression":
            scores = torch.sigmoid(output.flatten(1).float())
        else:
            scores = torch.softmax(output.flatten(1).float(), dim=1)
        values, indices = scores.topk(min(top_k, scores.shape[1]), dim=1)
        return [
            tuple(
                Prediction(i, names[i] if i < len(names) else f"class {i}", v)
                for v, i in zip(row_values, row_indices)
            )
            for row_values, row_indices in zip(values.tolist(), indices.tolist())
        ]


_INPUT_GRADIENT_NEEDS = frozenset({"input_gradient", "guided_input_gradient"})
_GRADIENT_NEEDS = _INPUT_GRADIENT_NEEDS | {"layer_gradient"}


def _decode(image: ImageSource) -> DecodedImage:
    return image if isinstance(image, DecodedImage) else decode_image(image)


def _runs_torchscript(module: torch.nn.Module) -> bool:
    """A ScriptModule, or an uploaded TorchScript model run in its worker (models.contained): layers and ReLUs
    out of the engine's sight."""
    return isinstance(module, torch.jit.ScriptModule) or getattr(module, "runs_torchscript", False)


def _methods(methods: Iterable[str]) -> list[str]:
    """The method names, each once, in order. A string is refused: it would be read letter by letter."""
    if isinstance(methods, (str, bytes)):
        raise MethodError(
            f"The methods must be a list of names, such as [{_shown(methods)}], not one piece of text "
            "(it would be read letter by letter)."
        )
    methods = list(itertools.islice(methods, MAX_METHOD_NAMES + 1))
    if len(methods) > MAX_METHOD_NAMES:
        raise MethodError(f"More than {MAX_METHOD_NAMES} method names were given; there are {len(METHODS)} methods.")
    wrong = [m for m in methods if not isinstance(m, str)]
    if wrong:
        raise MethodError(f"Each method must be named by a string such as 'gradcam'; got {_shown(wrong[0])}.")
    names = list(dict.fromkeys(methods))
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise MethodError(f"Unknown method {_shown(unknown[0])}. Available methods: {', '.join(METHODS)}.")
    return names


def _shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut at `limit` characters: user input quoted in a message stays short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _check_top_k(top_k: Any) -> None:
    """`top_k` must be a whole number ≥ 1; more than the model's outputs gives all of them."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise TargetError(
            f"The number of predictions to list (top_k) must be a whole number of at least 1; got {_shown(top_k)}."
        )


def _total_score(targets: tuple[Target, ...], output: torch.Tensor) -> torch.Tensor:
    """Σ_i score_i(output_i): samples are independent in eval mode, so one backward pass serves all."""
    if all(isinstance(t, ClassTarget) for t in targets) and output.dim() == 2:
        for target in set(targets):
            target.score(output[:1])  # raises a TargetError for a class the model does not have
        index = torch.tensor([t.index for t in targets], device=output.device)[:, None]
        return output.gather(1, index).sum()
    return torch.cat([t.score(output[i:i + 1]) for i, t in enumerate(targets)]).sum()


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return None
    return value
