"""The Explainer of a model that runs in a worker process (an ONNX upload, models.contained): every call is sent
to the Explainer the worker keeps over the converted model, and its result rebuilt here (contained_codec), so
callers get the same types and values as from an Explainer in this process. `Explainer(bundle)` gives one of
these when `bundle.module` runs in a worker; nothing else needs to know."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch

from .errors import EngineError
from .explainer import (
    ARTICLE_METHODS,
    BATCH_CHUNK,
    WORKER_EXPLAINER,
    Explainer,
    Explanation,
    ImageSource,
    TargetSpec,
    checked_batch,
)
from .methods import method_names
from .models.bundle import ModelBundle
from .models.contained_onnx import ContainedOnnxModel, shippable
from .targets import Prediction, check_top_k
from .tracing import LayerInfo, Trace

if TYPE_CHECKING:
    from .concepts import ConceptResult


class ContainedExplainer(Explainer):
    """`Explainer`'s public calls, answered by the model's worker. Safe to share between threads (the worker
    takes one request at a time). `cache_size` is that of the worker's Explainer."""

    def __init__(self, bundle: ModelBundle, *, cache_size: int = 2) -> None:
        self.bundle = bundle
        self.cache_size = cache_size

    def _call(self, name: str, *args: object, **kwargs: object) -> object:
        """The worker Explainer's `name(*args, **kwargs)`, rebuilt here as the type that call returns (the callers
        below name it)."""
        module = self.bundle.module
        if not isinstance(module, ContainedOnnxModel):
            raise EngineError("This model does not run in a worker, so its explanations cannot be asked of one.")
        return module.call(self.bundle, name, args, kwargs, cache_size=self.cache_size)

    def trace(self, image: ImageSource) -> Trace:
        return cast(Trace, self._call("trace", shippable(self.bundle, image)))

    def layers(self, image: ImageSource, method: str | None = None) -> list[LayerInfo]:
        return cast(list[LayerInfo], self._call("layers", shippable(self.bundle, image), method))

    def predict(self, image: ImageSource, top_k: int = 5) -> tuple[Prediction, ...]:
        check_top_k(top_k)
        return cast(tuple[Prediction, ...], self._call("predict", shippable(self.bundle, image), top_k))

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
        names = method_names(methods)  # an unknown method is refused here, before anything is sent
        check_top_k(top_k)
        explanation = self._call(
            "explain",
            shippable(self.bundle, image),
            layer=layer,
            target=target,
            methods=names,
            layers=dict(layers) if layers is not None else None,
            options={m: dict(o) for m, o in options.items()} if options is not None else None,
            top_k=top_k,
        )
        return cast(Explanation, explanation)

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
        """Sent BATCH_CHUNK images at a time, as the worker's Explainer would run them, so no message grows with
        the batch."""
        images, per_image = checked_batch(self.bundle, images, targets)
        names = method_names(methods)
        check_top_k(top_k)
        results: list[Explanation] = []
        for start in range(0, len(images), BATCH_CHUNK):
            chunk = slice(start, start + BATCH_CHUNK)
            results += cast(
                list[Explanation],
                self._call(
                    "explain_batch",
                    shippable(self.bundle, images[chunk]),
                    layer=layer,
                    targets=per_image[chunk],
                    methods=names,
                    layers=dict(layers) if layers is not None else None,
                    options={m: dict(o) for m, o in options.items()} if options is not None else None,
                    top_k=top_k,
                ),
            )
        return results

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
        result = self._call(
            "concepts",
            shippable(self.bundle, image),
            layer=layer,
            target=target,
            top=top,
            region=tuple(region) if region is not None else None,
            groups=groups,
        )
        return cast("ConceptResult", result)

    def sub_concepts(
        self, image: ImageSource, layer: str, channel: int, lower_layer: str, *, target: TargetSpec = None, top: int = 8
    ) -> ConceptResult:
        result = self._call(
            "sub_concepts", shippable(self.bundle, image), layer, channel, lower_layer, target=target, top=top
        )
        return cast("ConceptResult", result)


WORKER_EXPLAINER[:] = [ContainedExplainer]  # what `Explainer(bundle)` becomes for a model that runs in a worker
