"""How the view is written in the URL, and what a link may ask for: a `Codec` turns a plain key's value into a
query parameter's text and back, a `Domain` holds what a link may give it (what its widget could have produced),
and a `Param` pairs them under the parameter's name (`state.URL_PARAMS` lists them)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnnvis_engine.errors import shown


@dataclass(frozen=True)
class Codec:
    """How a plain key's value is written in a query parameter, and read back (ValueError if it cannot be)."""

    encode: Callable[[Any], str]
    decode: Callable[[str], Any]


def _decode_bool(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def _decode_optional_int(text: str) -> int | None:
    return int(text) if text else None


TEXT = Codec(str, str)
OPTIONAL_TEXT = Codec(lambda v: "" if v is None else str(v), lambda t: t or None)
INT = Codec(str, int)
OPTIONAL_INT = Codec(lambda v: "" if v is None else str(int(v)), _decode_optional_int)
FLOAT = Codec(lambda v: f"{float(v):g}", float)
BOOL = Codec(lambda v: "1" if v else "0", _decode_bool)
LIST = Codec(lambda v: ",".join(v or ()), lambda t: [item for item in t.split(",") if item])
TUPLE = Codec(lambda v: ",".join(v or ()), lambda t: tuple(item for item in t.split(",") if item))


def _encode_settings(settings: Mapping[str, Mapping[str, float]]) -> str:
    return ",".join(
        f"{m}.{name}={value:g}" for m, values in sorted(settings.items()) for name, value in sorted(values.items())
    )


def _decode_settings(text: str) -> dict[str, dict[str, float]]:
    settings: dict[str, dict[str, float]] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        method, _, option = name.rpartition(".")
        number = float(value)  # ValueError: the link's settings are left out, with a note
        if not math.isfinite(number):
            raise ValueError(value)
        settings.setdefault(method, {})[option] = number
    return settings


SETTINGS = Codec(_encode_settings, _decode_settings)


def _decode_box(text: str) -> str:
    """A Concepts box "x0,y0,x1,y1": four whole percents with x0 < x1 and y0 < y1, or "" (the whole picture)."""
    parts = text.split(",") if text else []
    if parts and (len(parts) != 4 or not all(re.fullmatch(r"\d{1,3}", part) for part in parts)):
        raise ValueError(text)
    if parts:
        x0, y0, x1, y1 = (int(part) for part in parts)
        if not (0 <= x0 < x1 <= 100 and 0 <= y0 < y1 <= 100):
            raise ValueError(text)
    return text


BOX = Codec(str, _decode_box)


MAX_PARAM_CHARS = 2000  # a query parameter's text: ~7 times the longest the app writes (six Compare model keys)
MAX_TEXT = 200  # one name: a model, weights, a picture, a layer (the longest here is under 80)

DROP = object()  # `Domain.admit`: the whole value is out, the parameter takes its default


@dataclass(frozen=True)
class Domain:
    """The values a link may give a parameter: those its widget could have produced. Numbers are finite and within
    `low`–`high`; a text (and each item of a list) is at most `max_length` characters and, where `choices` is given,
    one of them (or matches `pattern`); a list has no duplicates and at most `max_items`. `entries` checks a mapping
    (the method settings) item by item. `of_model` names choices that only the loaded model knows (its layers,
    convolutions, classes): `check_model_choices` applies them once the sidebar has loaded it."""

    low: float | None = None
    high: float | None = None
    choices: Callable[[], Sequence[Any]] | None = None
    pattern: re.Pattern[str] | None = None
    max_items: int | None = None
    max_length: int = MAX_TEXT
    entries: Callable[[str, Mapping[str, Any]], tuple[dict[str, Any], list[str]]] | None = None
    of_model: str = ""  # "layers", "convolutions", "classes" or "audit_classes" (class names and folder names)

    def admit(self, name: str, value: Any) -> tuple[Any, list[str]]:
        """(the value as far as it is in the domain, or DROP; what was left out, in words)."""
        if value is None or isinstance(value, bool):
            return value, []
        if isinstance(value, Mapping):
            return self.entries(name, value) if self.entries else (DROP, [f"{name} cannot be read"])
        offered = None if self.choices is None else self.choices()  # once per value: Compare's looks at files
        if isinstance(value, (list, tuple)):
            return self._admit_items(name, value, offered)
        problem = self._refusal(value, offered)
        return (DROP, [f"{name}={shown(value)} {problem}"]) if problem else (value, [])

    def _admit_items(self, name: str, items: Sequence[Any], offered: Sequence[Any] | None) -> tuple[Any, list[str]]:
        kept: list[Any] = []
        problems = []
        for item in items:
            problem = "is there twice" if item in kept else self._refusal(item, offered)
            if problem:
                problems.append(f"{name}: {shown(item)} {problem}")
            elif self.max_items is not None and len(kept) == self.max_items:
                problems.append(f"{name}: at most {self.max_items} fit, the rest were left out")
                break
            else:
                kept.append(item)
        return (tuple(kept) if isinstance(items, tuple) else kept), problems

    def _refusal(self, value: Any, offered: Sequence[Any] | None) -> str:
        """Why `value` is out of the domain ("" if it is in); `offered`: the choices now, None if any."""
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                return "is not a finite number"
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                return f"is outside {self.low:g}–{self.high:g}"
        elif len(str(value)) > self.max_length:
            return f"is longer than {self.max_length} characters"
        if offered is not None and value not in offered and not (self.pattern and self.pattern.fullmatch(str(value))):
            return "is not offered here"
        return ""


@dataclass(frozen=True)
class Param:
    """A plain key in the URL: its query parameter, how its value is written (`codec`) and what a link may give it
    (`domain`: the widget's own; widgets read their bounds and choices from it)."""

    name: str
    codec: Codec
    domain: Domain = Domain()
