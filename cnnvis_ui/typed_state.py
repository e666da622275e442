"""The session-state keys whose values flow into typed code, read with their types.

`state.get(key)` returns `Any`: Streamlit's session state holds whatever was put there. The few keys that the
`Context`, the sidebar and the cached engine calls build on (the model, its weights, the image, the layer, the
target, the uploads and the uploaded model) are read here instead, and each value is checked as it is read, so the
type a caller sees is true at run time, not only claimed. A value of another type can only come from a bug (links
reach these keys through `url_codec`'s checked domains), so it raises a TypeError that names the key. Every other
key keeps `state.get`: its value goes to a widget or a page, not into typed code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict, TypeVar, cast

from cnnvis_engine.errors import shown

from . import state
from .model_cache import Preprocessing

T = TypeVar("T")

Upload = tuple[str, bytes]  # (the file's name as shown, its bytes)
# One randomisation test (`Context.sanity_run`; `state.SANITY_RUNS` and `state.SANITY_OUTCOMES` are keyed by them):
# (image sha256, model key, layer or None, target or None, method, mode)
SanityRun = tuple[str, str, str | None, int | None, str, str]


class UserModel(TypedDict):
    """The model file uploaded in this session (`actions.load_user_model` writes it)."""

    key: str  # covers the file, the architecture, the labels, the preprocessing and the data files
    filename: str
    architecture: str | None  # None: TorchScript or ONNX, no architecture needed
    data: bytes
    labels: bytes | None
    preprocessing: NotRequired[Preprocessing | None]  # None: the file's or the architecture's own
    data_files: NotRequired[Mapping[str, bytes] | None]  # an ONNX model's external data files, by name


def _checked(key: str, value: object, kind: type[T]) -> T:
    if not isinstance(value, kind):
        raise TypeError(f"The session key {key!r} holds {shown(value)}, not a {kind.__name__} (a dashboard bug).")
    return value


def _text(key: str) -> str:
    return _checked(key, state.get(key), str)


def _optional(key: str, kind: type[T]) -> T | None:
    value = state.get(key)
    return None if value is None else _checked(key, value, kind)


def model_name() -> str:
    """The chosen model's registry name, or `state.USER_MODEL_CHOICE`."""
    return _text(state.MODEL)


def weights() -> str:
    """The chosen weights ("pretrained", "embedded", "random", "demo", ...; "file" for an uploaded model)."""
    return _text(state.WEIGHTS)


def image_ref() -> str:
    """The chosen image: "sample:<key>" or "upload:<sha256>"."""
    return _text(state.IMAGE)


def layer() -> str | None:
    """The chosen layer; None: the method's automatic one."""
    return _optional(state.LAYER, str)


def target() -> int | None:
    """The chosen class (or output, or segment) index; None: the top prediction."""
    value = state.get(state.TARGET)
    if value is None:
        return None
    if isinstance(value, bool):  # a bool is an int to isinstance, never a class index
        raise TypeError(f"The session key {state.TARGET!r} holds {shown(value)}, not a class index (a dashboard bug).")
    return _checked(state.TARGET, value, int)


def uploads() -> dict[str, Upload]:
    """This session's last few good image uploads, {sha256: (file name, bytes)}, oldest first."""
    return _checked(state.UPLOADS, state.get(state.UPLOADS), dict)


def user_model() -> UserModel | None:
    """The model file uploaded in this session, or None (none was, or the session that did is gone)."""
    value = state.get(state.USER_MODEL)
    if value is None:
        return None
    found = _checked(state.USER_MODEL, value, dict)
    missing = [key for key in ("key", "filename", "architecture", "data", "labels") if key not in found]
    if missing:
        raise TypeError(f"The session key {state.USER_MODEL!r} lacks {', '.join(missing)} (a dashboard bug).")
    return cast(UserModel, found)  # its keys checked just above: a TypedDict cannot be checked by isinstance
