"""The current choices turned into things a page can use: the model, the image, and cached engine calls.

`current()` never raises: a model or image that cannot be had becomes a message (`model_error`,
`image_error`) that the page shows where its panels would be, while the rest of the page keeps working.

The dashboard flows one way: pages -> `Context` (fetching through the cached `compute`, retrying, predictions
looked up once) -> `views` (engine results in, `PanelView`s out, no Streamlit) -> `panels` (drawing). The sidebar
builds the `Context` once per script run and hands it to the page (`hand_over`, `current`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial

import streamlit as st

from cnnvis_engine import (
    DecodedImage,
    EngineError,
    Explainer,
    Explanation,
    ImageError,
    ModelError,
    Prediction,
    list_samples,
)
from cnnvis_engine.faithfulness import Faithfulness
from cnnvis_engine.report import ReportStamp
from cnnvis_engine.sanity import Mode, RandomisationStep

from . import model_cache, result_cache, state, typed_state, upload_store, uploads, views
from .model_cache import ModelRef
from .views import PanelView


@dataclass(frozen=True)
class LoadedImage:
    ref: str  # "sample:<key>" or "upload:<sha256>"
    title: str  # what to call it on screen and in reports
    decoded: DecodedImage

    @property
    def sha(self) -> str:
        return self.decoded.sha256


@dataclass(frozen=True)
class Context:
    model: ModelRef
    image: LoadedImage | None
    explainer: Explainer | None
    layer: str | None  # the sidebar's layer; None = automatic
    target: int | None  # the sidebar's class; None = top-1
    image_error: str = ""
    model_error: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return self.image is not None and self.explainer is not None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.explainer.bundle.class_names if self.explainer else ()

    def weights_detail(self) -> str:
        bundle = self.explainer.bundle if self.explainer else None
        if bundle is None:
            return model_cache.WEIGHTS_LABELS.get(self.model.weights, self.model.weights)
        return f"{bundle.weights_source}: {bundle.weights_detail}" if bundle.weights_detail else bundle.weights_source

    def loaded(self) -> tuple[LoadedImage, Explainer]:
        """The image and the explainer; raises the ImageError or ModelError that kept one of them from loading (a
        page asks only once `ready` says both are there)."""
        if self.image is None:
            raise ImageError(self.image_error or "No picture is loaded; choose one in the sidebar.")
        if self.explainer is None:
            raise ModelError(self.model_error or "No model is loaded; choose one in the sidebar.")
        return self.image, self.explainer

    def layer_table(self) -> result_cache.LayerTable:
        image, explainer = self.loaded()
        return result_cache.layer_table(image.sha, self.model.key, explainer, image.decoded)

    def refused_methods(self) -> tuple[str, ...]:
        image, explainer = self.loaded()
        return result_cache.refused_methods(image.sha, self.model.key, explainer, image.decoded)

    @cached_property
    def _top5(self) -> tuple[tuple[Prediction, ...], EngineError | None]:
        """The top-5 predictions or the error that stopped them, looked up once per `Context` (the sidebar's
        buttons, the page's table and the report's row read the same)."""
        try:
            image, explainer = self.loaded()
            return result_cache.predictions(image.sha, self.model.key, explainer, image.decoded, 5), None
        except EngineError as error:
            return (), error

    def predictions(self) -> tuple[Prediction, ...]:
        """The top-5 predictions; raises the EngineError that stopped them."""
        found, error = self._top5
        if error is not None:
            raise error
        return found

    def known_predictions(self) -> tuple[Prediction, ...]:
        """The top-5 predictions, or none when they cannot be had (for a report row)."""
        return self._top5[0]

    def with_choices(self, layer: str | None, target: int | None) -> Context:
        """This context with another layer and target; the predictions already looked up come along (they depend
        on the model and the image only)."""
        moved = dataclasses.replace(self, layer=layer, target=target)
        if "_top5" in self.__dict__:  # functools.cached_property keeps its value in the instance's __dict__
            moved.__dict__["_top5"] = self.__dict__["_top5"]
        return moved

    def explain(
        self,
        methods: Sequence[str],
        *,
        layer: str | None = None,
        target: int | None = None,
        options: Mapping[str, Mapping[str, object]] | None = None,
        use_choices: bool = True,
    ) -> Explanation:
        """Cached `Explainer.explain` for this image and model; the sidebar's layer and target unless given."""
        image = self.loaded()[0]
        return result_cache.explain(
            image.sha,
            self.model.key,
            layer if layer is not None or not use_choices else self.layer,
            target if target is not None or not use_choices else self.target,
            tuple(methods),
            result_cache.freeze_options(options or {}),
            lambda: self.loaded()[1],
            image.decoded,
        )

    def explained_views(
        self,
        methods: Sequence[str],
        colormap: str,
        opacity: float,
        *,
        options: Mapping[str, Mapping[str, object]] | None = None,
    ) -> tuple[list[PanelView], Explanation | None]:
        """Views for `methods` from one cached engine call (`explain`, at the sidebar's layer and target). If that
        call fails, each method is tried alone, so only the panel whose method failed shows the error and the others
        still draw; the explanation returned is the last one had (None if every call failed)."""
        try:
            explanation = self.explain(methods, options=options)
        except EngineError:
            pass
        else:
            return views.method_views(explanation, colormap, opacity), explanation
        found: list[PanelView] = []
        last: Explanation | None = None
        for method in methods:
            try:
                explanation = self.explain([method], options=options)
            except EngineError as error:
                found.append(views.error_view(method, str(error)))
            else:
                found += views.method_views(explanation, colormap, opacity)
                last = explanation
        return found, last

    def report_stamp(self, explanation: Explanation | None, settings: dict[str, str]) -> ReportStamp:
        """What produced the panels (`views.report_stamp`): this model, its weights and this image."""
        title = self.image.title if self.image else ""
        return views.report_stamp(self.model.name, self.weights_detail(), title, explanation, settings)

    def faithfulness(
        self, explanation: Explanation, method: str, options: Mapping[str, Mapping[str, object]] | None = None
    ) -> Faithfulness:
        """Cached deletion/insertion/average-drop scores of `method`'s map in `explanation` (made with `options`)."""
        result = explanation[method]
        image, explainer = self.loaded()
        return result_cache.faithfulness(
            image.sha,
            self.model.key,
            result.layer,
            explanation.target.label,
            method,
            result_cache.freeze_options(options or {}),
            explainer,
            image.decoded,
            result.arrays()[0],
            explanation.target,
        )

    def randomisation(self, method: str, mode: Mode) -> tuple[RandomisationStep, ...]:
        """Cached randomisation test of `method` at the sidebar's layer and target (a progress bar while it runs)."""
        image, explainer = self.loaded()
        return result_cache.randomisation(
            image.sha, self.model.key, self.layer, self.target, method, mode, explainer, image.decoded
        )

    def sanity_run(self, method: str, mode: str) -> typed_state.SanityRun:
        """What identifies one randomisation test in `state.SANITY_RUNS`."""
        return (self.loaded()[0].sha, self.model.key, self.layer, self.target, method, mode)


def with_model(ctx: Context, model: ModelRef) -> Context:
    """`ctx` with another model (same image, automatic layer and class); a load failure becomes `model_error`."""
    try:
        explainer, error = load_explainer(model), ""
    except EngineError as exc:
        explainer, error = None, str(exc)
    return dataclasses.replace(ctx, model=model, explainer=explainer, model_error=error, layer=None, target=None)


USER_MODEL_GONE = "Your uploaded model is no longer kept in this session; load it again in the sidebar."


def current_model() -> ModelRef:
    name, weights = typed_state.model_name(), typed_state.weights()
    user = typed_state.user_model()
    if name == state.USER_MODEL_CHOICE:
        if user is None:  # the session that uploaded it is gone
            default = model_cache.default_model()
            state.put(state.MODEL, default.name)
            state.put(state.WEIGHTS, default.weights)
            return default
        return ModelRef(user["filename"], "file", user["key"])
    return ModelRef(name, weights)


def load_explainer(model: ModelRef) -> Explainer:
    """The cached explainer for `model`; raises EngineError with the reason it cannot be had."""
    if model.weights == "file":
        user = typed_state.user_model()
        if user is None:
            raise ModelError(USER_MODEL_GONE)
        return model_cache.file_explainer(
            model.file_key,
            user["filename"],
            user["architecture"],
            user["data"],
            user["labels"],
            preprocessing=user.get("preprocessing"),
            allow_torchscript=uploads.server_allows_torchscript(),
            _data_files=user.get("data_files"),
        )
    problem = model_cache.model_refusal(model.name) or model_cache.weights_problem(model.name, model.weights)
    if problem:
        raise ModelError(problem)
    return model_cache.registry_explainer(model.name, model.weights)


def model_for(key: str) -> ModelRef:
    """A model key as Compare lists it: a registry model's `name:weights`, or the upload in this session."""
    name, _, weights = key.rpartition(":")  # names may hold ":" (timm:resnet18d, net.py:build)
    if name != state.USER_MODEL_CHOICE:
        return ModelRef(name, weights)
    user = typed_state.user_model()
    if user is None:
        raise ModelError(USER_MODEL_GONE)
    return ModelRef(user["filename"], "file", user["key"])


def explain_on(model_key: str, image: LoadedImage, method: str) -> Explanation:
    """`method` on another model at its automatic layer and top-1 class (a Compare cell), through the same cache
    as `Context.explain`; the model is loaded only if the result is not cached yet."""
    model = model_for(model_key)
    return result_cache.explain(
        image.sha,
        model.key,
        None,
        None,
        (method,),
        result_cache.freeze_options(result_cache.method_options(method)),
        partial(load_explainer, model),
        image.decoded,
    )


MISSING_UPLOAD = (
    "The image this view was made with was uploaded, and this server no longer has it (uploads are kept for a "
    "while, not for ever). Please upload it again: the same picture brings the same view back."
)


def adopt_upload(digest: str) -> tuple[str, bytes] | None:
    """An upload of another session that the server still keeps (a shared link), added to this session's
    uploads; None when the server no longer has it."""
    entry = upload_store.upload_store().get(digest)
    if entry is not None:
        uploads = {**typed_state.uploads(), digest: entry}
        state.put(state.UPLOADS, dict(list(uploads.items())[-state.MAX_UPLOADS :]))
    return entry


def image_title(ref: str) -> str:
    kind, _, key = ref.partition(":")
    if kind == "upload":
        entry = typed_state.uploads().get(key)
        return entry[0] if entry else "your upload"
    return next((s.title for s in list_samples() if s.key == key), key)


def load_image(ref: str) -> LoadedImage:
    """Decode the image `ref` names (cached); raises EngineError."""
    kind, _, key = ref.partition(":")
    if kind == "upload":
        entry = typed_state.uploads().get(key) or adopt_upload(key)
        if entry is None:
            raise ImageError(MISSING_UPLOAD)
        return LoadedImage(ref, entry[0], result_cache.decode_upload(key, entry[1]))
    return LoadedImage(ref, image_title(ref), result_cache.decode_sample(key))


_HANDED = "_context_this_run"  # the sidebar's Context for the page of the same script run (not in the URL)


def hand_over(ctx: Context | None) -> None:
    """Keep the `Context` the sidebar built for the page this script run draws (None: forget it, once the page has
    run). `current()` takes it, so a page and the sidebar read one model, image and set of predictions."""
    if ctx is None:
        st.session_state.pop(_HANDED, None)
    else:
        st.session_state[_HANDED] = ctx


def settled(ctx: Context) -> Context:
    """`ctx` after the sidebar has drawn its widgets: a link's layer or class this model lacks has become automatic
    again by then (`state.check_model_choices`). Should the model or the image have changed too, a new one."""
    if current_model() != ctx.model or ctx.image is None or typed_state.image_ref() != ctx.image.ref:
        return build()
    return ctx.with_choices(typed_state.layer(), typed_state.target())


def current() -> Context:
    """The `Context` of this script run: the one the sidebar handed over, or (a page run on its own, as AppTest
    runs pages) a new one."""
    handed = st.session_state.pop(_HANDED, None)
    return handed if isinstance(handed, Context) else build()


def build() -> Context:
    """The current model, image, layer and target; problems become messages, never exceptions."""
    state.init()
    model = current_model()
    image, image_error = None, ""
    try:
        image = load_image(typed_state.image_ref())
    except EngineError as error:
        image_error = str(error)
        state.put(state.UPLOAD_ERROR, image_error)  # stays under the uploader until another image is chosen
        state.put(state.IMAGE, state.DEFAULT_IMAGE)
        image = load_image(state.DEFAULT_IMAGE)
    explainer, model_error = None, ""
    try:
        explainer = load_explainer(model)
    except EngineError as error:
        model_error = str(error)
    return Context(
        model=model,
        image=image,
        explainer=explainer,
        layer=typed_state.layer(),
        target=typed_state.target(),
        image_error=image_error,
        model_error=model_error,
        notes=image.decoded.notes if image else (),
    )
