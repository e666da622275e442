"""The only exceptions callers of cnnvis_engine see. Each message is a sentence a person understands."""

from __future__ import annotations

from typing import Any


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut at `limit` characters: user input quoted in a message stays short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ImageError(EngineError):
    """The image could not be read, or is not something we can explain (too big, too small, not an image)."""


class ModelError(EngineError):
    """The model is unknown, or its weights cannot be had, or it cannot run."""


class ModelFileError(ModelError):
    """A user's model or labels file is refused: unsafe, malformed or wrong for the architecture."""


class LayerError(EngineError):
    """The layer does not exist in the traced model, or cannot serve the requested method."""


class TargetError(EngineError):
    """The target (class, region, output) does not fit the model's output."""


class MethodError(EngineError):
    """The method name is unknown or its settings are invalid."""
