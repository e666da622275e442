"""Typed reads of the session state (issue 25): the keys typed code builds on come back with their types or raise a
TypeError naming the key; a Context without its image or model says why instead of failing on None; the Stories'
targets map onto the engine's. No Streamlit script runs: `state.get` is replaced by a plain dict."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cnnvis_engine import ClassTarget, ImageError, ModelError, RegressionTarget, SegmentationTarget
from cnnvis_ui import context, state, story_data, typed_state
from cnnvis_ui.model_cache import ModelRef

TINY_USER_MODEL = {"key": "k", "filename": "net.pt", "architecture": None, "data": b"\0", "labels": None}


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    values: dict[str, object] = {
        state.MODEL: "resnet18",
        state.WEIGHTS: "random",
        state.IMAGE: "sample:cat",
        state.LAYER: None,
        state.TARGET: None,
        state.UPLOADS: {},
        state.USER_MODEL: None,
    }
    monkeypatch.setattr(state, "get", values.__getitem__)
    yield values


def test_the_chosen_values_come_back_with_their_types(session: dict[str, object]) -> None:
    assert (typed_state.model_name(), typed_state.weights(), typed_state.image_ref()) == (
        "resnet18",
        "random",
        "sample:cat",
    )
    assert typed_state.layer() is None and typed_state.target() is None and typed_state.user_model() is None
    session.update({state.LAYER: "layer4.1", state.TARGET: 281, state.UPLOADS: {"ab": ("cat.png", b"png")}})
    session[state.USER_MODEL] = TINY_USER_MODEL
    assert typed_state.layer() == "layer4.1" and typed_state.target() == 281
    assert typed_state.uploads() == {"ab": ("cat.png", b"png")}
    user = typed_state.user_model()
    assert user is not None and user["filename"] == "net.pt"


@pytest.mark.parametrize(
    ("key", "value", "read"),
    [
        (state.LAYER, 3, typed_state.layer),
        (state.TARGET, "281", typed_state.target),
        (state.TARGET, True, typed_state.target),
        (state.IMAGE, None, typed_state.image_ref),
        (state.UPLOADS, [("cat.png", b"png")], typed_state.uploads),
        (state.USER_MODEL, {"key": "k", "filename": "net.pt"}, typed_state.user_model),
    ],
)
def test_a_value_of_another_type_raises_naming_its_key(
    session: dict[str, object], key: str, value: object, read: Callable[[], object]
) -> None:
    session[key] = value
    with pytest.raises(TypeError, match=repr(key)):
        read()


def test_a_context_without_its_image_or_model_says_why() -> None:
    ctx = context.Context(
        ModelRef("resnet18", "random"), None, None, None, None, image_error="No picture.", model_error="No net."
    )
    with pytest.raises(ImageError, match="No picture."):
        ctx.loaded()
    with pytest.raises(ImageError, match="No picture."):
        ctx.layer_table()
    assert ctx.known_predictions() == ()  # a report row: no predictions, no exception


def test_an_uploaded_model_that_is_gone_is_a_model_error(session: dict[str, object]) -> None:
    with pytest.raises(ModelError, match="no longer kept"):
        context.load_explainer(ModelRef("net.pt", "file", "k"))


def test_story_targets_become_the_engines_targets() -> None:
    names = ("background", "tank", "salt")
    assert story_data._story_target(("class", 1), names) == ClassTarget(1, "tank")
    assert story_data._story_target(("segment", 2), names) == SegmentationTarget(2, name="salt")
    assert story_data._story_target(("outputs", (0, 2)), names) == RegressionTarget((0, 2))
    assert story_data._story_target(("outputs", None, "all of them"), names) == RegressionTarget(None, "all of them")
