"""Plans the passes for a set of methods and runs each pass once; the passes themselves are `recording`'s.

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
that pass's graph), which `_explain` takes for everything it does with the pass.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, cast

import numpy as np
import torch

from .applicability import not_applicable, refused
from .concepts import relevance
from .errors import ImageError, ModelError, TargetError
from .images import DecodedImage, decode_image
from .methods import METHODS, MethodInputs, MethodResult, layers_for, method_names
from .models.bundle import ModelBundle
from .models.contained_onnx import runs_in_worker
from .recording import RecordedPass, Recorder, extra_pass
from .targets import Prediction, Target, check_top_k, resolve_target, top_predictions
from .tracing import LayerInfo, Trace

if TYPE_CHECKING:
    from .concepts.results import ConceptResult

# The article's seven methods: what `explain` computes unless told otherwise.
ARTICLE_METHODS = ("feature_maps", "kernels", "saliency", "guided_backprop", "cam", "gradcam", "guided_gradcam")
# Bounds on one explain_batch call: its results (each image and its maps, ~1 MB at 224×224 for a few methods) are
# all returned at once, so at most MAX_BATCH images; they go through the model BATCH_CHUNK at a time, so the
# recorded pass (every layer's output and the graph: ~30 MB per image on resnet50) stays bounded.
MAX_BATCH = 1024
BATCH_CHUNK = 32
TargetSpec = int | Target | None
ImageSource = Any  # PIL image, bytes, path or DecodedImage


def decode(image: ImageSource) -> DecodedImage:
    return image if isinstance(image, DecodedImage) else decode_image(image)


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


WORKER_EXPLAINER: list[type[Explainer]] = []  # the Explainer for a model that runs in a worker process (one)


def worker_explainer() -> type[Explainer]:
    """The registered Explainer subclass for models that run in a worker (`contained_explainer`)."""
    if not WORKER_EXPLAINER:
        raise ModelError(
            "This model runs in a separate worker process, and the part of cnnvis that talks to it is not loaded; "
            "import cnnvis_engine (the package) rather than one of its modules alone."
        )
    return WORKER_EXPLAINER[-1]


class Explainer:
    """Explains one model's predictions. Safe to share between threads.

    `cache_size` recorded forward passes (images) are kept with their graphs; each costs about the memory
    of one training step's activations.

    For a model that runs in a worker process (an ONNX upload: models.contained), `Explainer(bundle)` is a
    `ContainedExplainer`, which sends each call to the worker's own Explainer and gives the same results. (That
    subclass registers itself in `WORKER_EXPLAINER` when `contained_explainer` is imported, as the package does, so
    this module does not import its own subclass.)
    """

    def __new__(cls, bundle: ModelBundle, *, cache_size: int = 2) -> Self:
        if cls is Explainer and runs_in_worker(bundle.module):
            return cast(Self, super().__new__(worker_explainer()))  # cls is Explainer here: a subclass is a Self
        return super().__new__(cls)

    def __init__(self, bundle: ModelBundle, *, cache_size: int = 2) -> None:
        self.bundle = bundle
        self.cache_size = cache_size
        self._passes: OrderedDict[str, RecordedPass] = OrderedDict()
        self._recorder = Recorder(bundle)

    # ----- public API -------------------------------------------------------------------------------
    def trace(self, image: ImageSource) -> Trace:
        return self._cached_pass(image).trace

    def layers(self, image: ImageSource, method: str | None = None) -> list[LayerInfo]:
        """The layers `image` passed through, in execution order; only those valid for `method` if given."""
        trace = self.trace(image)
        return list(trace.layers) if method is None else layers_for(trace, method_names([method])[0])

    def predict(self, image: ImageSource, top_k: int = 5) -> tuple[Prediction, ...]:
        check_top_k(top_k)
        return top_predictions(self.bundle, self._cached_pass(image).output.detach(), top_k)[0]

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
        names = method_names(methods)
        check_top_k(top_k)
        fp = self._cached_pass(image)
        return self._explain(fp, [target], names, layer, layers, options, top_k)[0]

    def concepts(
        self,
        image: ImageSource,
        *,
        layer: str | None = None,
        target: TargetSpec = None,
        top: int = 8,
        region: Sequence[float] | None = None,
        groups: int | None = None,
    ) -> ConceptResult:
        """The channels of `layer` the target's score rests on, ranked, with maps of where the `top` ones are (or
        `groups` groups of channels; `region` a box in pixels): `concepts.relevance.concepts`. No extra forward."""
        return relevance.concepts(
            self.bundle, self._cached_pass(image), layer=layer, target=target, top=top, region=region, groups=groups
        )

    def sub_concepts(
        self, image: ImageSource, layer: str, channel: int, lower_layer: str, *, target: TargetSpec = None, top: int = 8
    ) -> ConceptResult:
        """The channels of `lower_layer` that `channel` of `layer` draws on: `concepts.relevance.sub_concepts`."""
        return relevance.sub_concepts(
            self.bundle, self._cached_pass(image), layer, channel, lower_layer, target=target, top=top
        )

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
        images, per_image = checked_batch(self.bundle, images, targets)
        names = method_names(methods)
        check_top_k(top_k)
        results: list[Explanation] = []
        for start in range(0, len(images), BATCH_CHUNK):
            chunk = slice(start, start + BATCH_CHUNK)
            results += self._explain_chunk(images[chunk], per_image[chunk], names, layer, layers, options, top_k)
        return results

    def _explain_chunk(
        self,
        images: list[ImageSource] | torch.Tensor,
        per_image: list[TargetSpec],
        names: list[str],
        layer: str | None,
        layers: Mapping[str, str] | None,
        options: Mapping[str, Mapping[str, Any]] | None,
        top_k: int,
    ) -> list[Explanation]:
        """`explain_batch` for at most BATCH_CHUNK images: one forward pass, shared backward passes."""
        needs = frozenset().union(*(METHODS[m].needs for m in names))
        if isinstance(images, torch.Tensor):
            x, displays, notes = self.bundle.batch_of_tensor(images)
        else:
            x, displays, notes = self.bundle.batch([decode(image) for image in images])
        fp = None
        if not needs & _INPUT_GRADIENT_NEEDS:
            fp = self._lean_pass(x, displays, notes, names, layer, layers or {})
        if fp is None:  # nothing to keep the graph for if no method takes a gradient from this pass
            fp = self._recorder.whole(x, displays, notes, graph=bool(needs & _GRADIENT_NEEDS))
        return self._explain(fp, per_image, names, layer, layers, options, top_k)

    # ----- forward ----------------------------------------------------------------------------------
    def _cached_pass(self, image: ImageSource) -> RecordedPass:
        decoded = decode(image)
        with self.bundle.lock:
            cached = self._passes.get(decoded.sha256)
            if cached is not None:
                self._passes.move_to_end(decoded.sha256)
                return cached
            fp = self._recorder.whole(*self.bundle.batch([decoded]))
            self._passes[decoded.sha256] = fp
            while len(self._passes) > self.cache_size:
                self._passes.popitem(last=False)
            return fp

    def _lean_pass(
        self,
        x: torch.Tensor,
        displays: list[np.ndarray],
        notes: list[tuple[str, ...]],
        methods: list[str],
        layer: str | None,
        layers: Mapping[str, str],
    ) -> RecordedPass | None:
        """A pass for `explain_batch`, which never serves another call, for methods that take no gradient to the
        input: only the outputs of the layers they use, the graph from the first whose gradient they take
        (`Recorder.lean`). None (a whole pass is needed) when no whole pass of this input shape has traced it
        yet, or when the model ran other modules this time."""
        trace = self._recorder.known_trace(tuple(x.shape[1:]))
        if trace is None:
            return None
        chosen = {m: self._layer_for(m, trace, layer, layers) for m in methods}
        kept = frozenset(name for name in chosen.values() if name)
        grad_from = frozenset(name for m in methods if (name := chosen[m]) and "layer_gradient" in METHODS[m].needs)
        return self._recorder.lean(x, displays, notes, trace, kept, grad_from)

    # ----- one explanation --------------------------------------------------------------------------
    def _explain(
        self,
        fp: RecordedPass,
        target_specs: list[TargetSpec],
        methods: list[str],
        layer: str | None,
        layers: Mapping[str, str] | None,
        options: Mapping[str, Mapping[str, Any]] | None,
        top_k: int,
    ) -> list[Explanation]:
        with fp.lock:
            chosen = {m: self._layer_for(m, fp.trace, layer, layers or {}) for m in methods}
            fp.refresh({name for m, name in chosen.items() if name and METHODS[m].needs & {"activation", "cam"}})
            targets = tuple(
                resolve_target(spec, fp.output[i : i + 1], self.bundle.task, self.bundle.class_names)
                for i, spec in enumerate(target_specs)
            )
            score = fp.score(targets)
            reasons = {m: not_applicable(self.bundle, m, fp.trace, targets, chosen[m]) for m in methods}
            plain = [
                name
                for m in methods
                if not reasons[m]
                for need in METHODS[m].needs & {"layer_gradient", "input_gradient"}
                if (name := chosen[m] if need == "layer_gradient" else "input")
            ]
            fp.plain_pass(targets, score, plain)
            per_method = {
                m: (
                    [MethodResult.not_applicable(m, reasons[m], chosen[m])] * len(targets)
                    if reasons[m]
                    else self._run(m, fp, targets, score, chosen[m], (options or {}).get(m, {}))
                )
                for m in methods
            }
        predictions = top_predictions(self.bundle, fp.output.detach(), top_k)
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
        self,
        method: str,
        fp: RecordedPass,
        targets: tuple[Target, ...],
        score: torch.Tensor,
        layer: str | None,
        options: Mapping[str, object],
    ) -> list[MethodResult]:
        cls = METHODS[method]
        inputs = MethodInputs(
            layer=layer,
            module=self.bundle.module.get_submodule(layer) if layer and "module" in cls.needs else None,
            input_size=(fp.x.shape[2], fp.x.shape[3]),
            targets=targets,
            x=fp.x.detach(),
            output=fp.output.detach(),
            options=options,
        )
        # Methods that take a map see every layout as (N, C, h, w): prefix tokens dropped, the grid restored.
        layout = fp.trace.get(layer).layout if layer is not None and cls.layer in ("spatial", "cam_site") else None
        view = layout.view if layout is not None and layout.is_map else _unchanged
        if layout is not None and layout.is_map:
            inputs.meta["layout"] = layout.describe()
        if layer is not None and cls.needs & {"activation", "layer_gradient", "cam"}:
            inputs.activation = view(fp.value(layer))
            if len(fp.calls[layer]) > 1:
                inputs.meta["calls"] = f"'{layer}' runs {len(fp.calls[layer])} times; its last run is shown."
        if "layer_gradient" in cls.needs and layer is not None:
            inputs.layer_gradient = view(fp.gradient(targets, score, layer))
        if "input_gradient" in cls.needs:
            inputs.input_gradient = fp.gradient(targets, score, "input")
        if "guided_input_gradient" in cls.needs:
            inputs.guided_input_gradient = fp.gradient(targets, score, "guided")
            inputs.meta["unguided"] = fp.trace.unguided
        if "cam" in cls.needs:
            inputs.cam_weights, inputs.cam_bias = fp.cam_weights(targets)
        if "attention" in cls.needs:
            inputs.attention = fp.attention(targets, gradients="attention_gradient" in cls.needs)
        if "forward" in cls.needs:
            inputs.forward = functools.partial(_viewed_pass, self.bundle, view)
        return cls().compute(inputs).results(method, layer, len(targets))

    def refusals(self, image: ImageSource) -> dict[str, str]:
        """The methods that cannot run on this model whatever the target and layer, each with its sentence (the
        attention methods on a network without attention): Explore does not offer them."""
        trace = self.trace(image)
        return {m: reason for m in METHODS if (reason := refused(self.bundle, m, trace, ()))}


def checked_batch(
    bundle: ModelBundle, images: Sequence[ImageSource] | torch.Tensor, targets: TargetSpec | Sequence[TargetSpec]
) -> tuple[list[ImageSource] | torch.Tensor, list[TargetSpec]]:
    """`explain_batch`'s images (a list, or the tensor checked by `check_batch`) and one target per image; an
    ImageError or TargetError with a sentence for an empty or too large batch or a wrong number of targets."""
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
    if isinstance(images, torch.Tensor):
        bundle.check_batch(images)  # shape and finite values, before the first chunk runs
    return images, per_image


_INPUT_GRADIENT_NEEDS = frozenset({"input_gradient", "guided_input_gradient"})
_GRADIENT_NEEDS = _INPUT_GRADIENT_NEEDS | {"layer_gradient"}


def _unchanged(values: torch.Tensor) -> torch.Tensor:
    return values


def _viewed_pass(
    bundle: ModelBundle, view: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, layer: str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`extra_pass` with the layer's output in the canonical (M, C, h, w) view."""
    output, values = extra_pass(bundle, x, layer)
    return output, None if values is None else view(values)
