"""Checks on what callers hand the explainer, each refusal a sentence that quotes the wrong value briefly."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import MethodError, TargetError
from .methods import METHODS

MAX_METHOD_NAMES = 1000  # names read from one `methods` argument (an endless generator stops here)


def method_names(methods: Iterable[str]) -> list[str]:
    """The method names, each once, in order. A string is refused: it would be read letter by letter."""
    if isinstance(methods, (str, bytes)):
        raise MethodError(
            f"The methods must be a list of names, such as [{shown(methods)}], not one piece of text "
            "(it would be read letter by letter)."
        )
    methods = list(itertools.islice(methods, MAX_METHOD_NAMES + 1))
    if len(methods) > MAX_METHOD_NAMES:
        raise MethodError(f"More than {MAX_METHOD_NAMES} method names were given; there are {len(METHODS)} methods.")
    wrong = [m for m in methods if not isinstance(m, str)]
    if wrong:
        raise MethodError(f"Each method must be named by a string such as 'gradcam'; got {shown(wrong[0])}.")
    names = list(dict.fromkeys(methods))
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise MethodError(f"Unknown method {shown(unknown[0])}. Available methods: {', '.join(METHODS)}.")
    return names


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut at `limit` characters: user input quoted in a message stays short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_top_k(top_k: Any) -> None:
    """`top_k` must be a whole number ≥ 1; more than the model's outputs gives all of them."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise TargetError(
            f"The number of predictions to list (top_k) must be a whole number of at least 1; got {shown(top_k)}."
        )
