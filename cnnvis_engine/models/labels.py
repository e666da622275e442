"""Class names from a labels file: plain text (one a line), a JSON list, a JSON `{index: name}` object, or the
Python dict literal `{0: 'tench, Tinca tinca', 1: ...}` that ImageNet label files often are
(`imagenet1000_clsidx_to_labels.txt`, the article's `imaganet2human.txt`).

Nothing here runs the file: JSON goes through `json.loads`, a dict literal through `ast.literal_eval`, which
accepts only literals (strings, numbers, lists, dicts) and never calls anything. Names are kept as plain
strings, never markup.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence

from ..errors import ModelFileError

MAX_LABEL_LINES = 100_000  # also the most classes a list or mapping may name
MAX_LABEL_BYTES = 16 * 2**20
MAX_NAME_CHARS = 1_000


def parse_labels(data: bytes, filename: str = "") -> tuple[str, ...]:
    """Class names, index order, from a labels file in any of the module's formats.

    A file whose text starts with `[` or `{` is read as a JSON list or object, or else as a Python literal;
    any other file is one name per line, blank lines dropped. Every problem is a `ModelFileError` sentence."""
    if len(data) > MAX_LABEL_BYTES:
        raise ModelFileError(
            f"The labels file is {len(data) / 2**20:,.1f} MB; the limit is {MAX_LABEL_BYTES // 2**20} MB."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelFileError("The labels file is not UTF-8 text; save it as UTF-8, one class name per line.") from exc
    stripped = text.strip()
    if stripped[:1] in ("[", "{") or filename.lower().endswith(".json"):
        return _from_structure(_read_structure(stripped))
    return _from_lines(text)


def _from_lines(text: str) -> tuple[str, ...]:
    lines = text.splitlines()
    if len(lines) > MAX_LABEL_LINES:
        raise ModelFileError(f"The labels file has {len(lines):,} lines; the limit is {MAX_LABEL_LINES:,}.")
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise ModelFileError("The labels file is empty; it needs one class name per line.")
    _check_lengths(names)
    return names


def _read_structure(text: str) -> object:
    """JSON first; a Python literal (single quotes, int keys, trailing commas) second."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ModelFileError(_TOO_NESTED) from exc
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (RecursionError, MemoryError) as exc:  # the parser gives up on deep nesting in either way
        raise ModelFileError(_TOO_NESTED) from exc
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ModelFileError(
            "The labels file starts like a list or a mapping but is neither valid JSON nor a Python literal "
            f"({_reason(exc)}). Give one class name per line, a JSON list of names, or {{index: name}}."
        ) from exc


_TOO_NESTED = "The labels file is nested too deeply; it must be a flat list of names or one {index: name} mapping."


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        reason = f"{exc.msg} on line {exc.lineno}"
    else:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return reason if len(reason) <= 120 else reason[:117] + "..."


def _from_structure(value: object) -> tuple[str, ...]:
    if isinstance(value, Mapping):
        return _from_mapping(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        names = tuple(value)
        _check_count(len(names))
        return _checked_names(names, [str(i) for i in range(len(names))])
    raise ModelFileError(
        f"The labels file holds a {type(value).__name__}; it needs a list of class names or an {{index: name}} mapping."
    )


def _from_mapping(mapping: Mapping[object, object]) -> tuple[str, ...]:
    _check_count(len(mapping))
    indices = []
    for key in mapping:
        index = _index(key)
        if index is None:
            raise ModelFileError(
                f"The labels file maps {_show(key)} to a name; its keys must be class indices 0, 1, 2, ..."
            )
        indices.append(index)
    by_index = dict(zip(indices, mapping.values()))
    if len(by_index) != len(mapping):
        raise ModelFileError('The labels file names some class index twice (for example 1 and "1").')
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        beyond = max(by_index)
        raise ModelFileError(
            f"The labels file's indices have gaps: there is no name for {_few_indices(missing)}, but one for "
            f"{beyond}. Class indices must run 0 to {len(by_index) - 1} without gaps."
        )
    order = range(len(by_index))
    return _checked_names(tuple(by_index[i] for i in order), [str(i) for i in order])


def _index(key: object) -> int | None:
    """A class index from an int key, or a JSON string key that spells a non-negative int."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key if key >= 0 else None
    if isinstance(key, str) and key.strip().isdigit() and key.strip().isascii():
        return int(key.strip())
    return None


def _checked_names(values: tuple[object, ...], where: list[str]) -> tuple[str, ...]:
    names = []
    for value, index in zip(values, where):
        if not isinstance(value, str):
            raise ModelFileError(
                f"Class {index} in the labels file is {_show(value)}, not a name; every class needs a text name."
            )
        if not value.strip():
            raise ModelFileError(f"Class {index} in the labels file has an empty name.")
        names.append(value.strip())
    if not names:
        raise ModelFileError("The labels file names no classes.")
    _check_lengths(names)
    return tuple(names)


def _check_count(count: int) -> None:
    if count > MAX_LABEL_LINES:
        raise ModelFileError(f"The labels file names {count:,} classes; the limit is {MAX_LABEL_LINES:,}.")


def _check_lengths(names: Sequence[str]) -> None:
    longest = max(range(len(names)), key=lambda i: len(names[i]))
    if len(names[longest]) > MAX_NAME_CHARS:
        raise ModelFileError(
            f"Class {longest}'s name in the labels file is {len(names[longest]):,} characters long; "
            f"the limit is {MAX_NAME_CHARS:,}."
        )


def _show(value: object) -> str:
    """A short, plain description of a stray key or value, for a sentence."""
    if isinstance(value, (dict, list, tuple, set)):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _few_indices(indices: list[int], limit: int = 3) -> str:
    shown = ", ".join(map(str, indices[:limit]))
    return shown if len(indices) <= limit else f"{shown} and {len(indices) - limit} more"
