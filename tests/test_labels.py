"""Labels files in every format the upload takes, and hostile ones refused with a sentence."""

from __future__ import annotations

import json

import pytest

from cnnvis_engine import ModelFileError
from cnnvis_engine.models import parse_labels
from cnnvis_engine.models.labels import parse_labels as labels_parse_labels

# The start of the article's imaganet2human.txt (the usual imagenet1000_clsidx_to_labels.txt): a Python dict literal.
IMAGENET_LITERAL = b"""{0: 'tench, Tinca tinca',
 1: 'goldfish, Carassius auratus',
 2: 'great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias',
 3: "tiger shark, Galeocerdo cuvieri",
}"""


def test_the_old_import_is_the_new_parser() -> None:
    assert parse_labels is labels_parse_labels


@pytest.mark.parametrize(
    ("data", "names"),
    [
        (b"cat\ndog\n\n fish \r\n", ("cat", "dog", "fish")),
        (json.dumps(["cat", "dog", "fish"]).encode(), ("cat", "dog", "fish")),
        (json.dumps({"2": "fish", "0": "cat", "1": "dog"}).encode(), ("cat", "dog", "fish")),
        (b'\xef\xbb\xbf  ["caf\xc3\xa9", "na\xc3\xafve"]  ', ("café", "naïve")),
        (b"{0: 'cat', 1: 'dog', 2: 'fish',}", ("cat", "dog", "fish")),
        (b"['cat', 'dog']", ("cat", "dog")),
    ],
    ids=["lines", "json-list", "json-object", "bom-json", "dict-literal", "list-literal"],
)
def test_each_format_gives_the_names_in_index_order(data: bytes, names: tuple[str, ...]) -> None:
    assert parse_labels(data) == names


def test_the_articles_imagenet_dict_literal() -> None:
    names = parse_labels(IMAGENET_LITERAL, "imaganet2human.txt")
    assert names[0] == "tench, Tinca tinca" and names[3] == "tiger shark, Galeocerdo cuvieri" and len(names) == 4


def test_a_dict_literal_is_never_run(tmp_path) -> None:
    marker = tmp_path / "ran"
    hostile = f"{{0: __import__('pathlib').Path({str(marker)!r}).touch()}}".encode()
    with pytest.raises(ModelFileError, match="neither valid JSON nor a Python literal"):
        parse_labels(hostile)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"{0: 'cat', 2: 'fish'}", r"gaps: there is no name for 1, but one for 2"),
        (b'{"0": "cat", "x": "dog"}', r"maps 'x' to a name; its keys must be class indices"),
        (b"{0: 'cat', -1: 'dog'}", r"maps -1 to a name"),
        (b"{0: 'cat', 1.5: 'dog'}", r"maps 1.5 to a name"),
        (b"{True: 'cat'}", r"maps True to a name"),
        (b"{0: 'cat', '0': 'dog'}", r"names some class index twice"),
        (b'["cat", 3]', r"Class 1 in the labels file is 3, not a name"),
        (b'[["cat"], "dog"]', r"Class 0 in the labels file is a list, not a name"),
        (b"{0: {'a': 'b'}}", r"Class 0 in the labels file is a dict"),
        (b'["cat", "  "]', r"Class 1 in the labels file has an empty name"),
        (b"[]", r"names no classes"),
        (b'"cat"', r"holds a str"),
        (b"{0: 'cat'", r"neither valid JSON nor a Python literal \('\{' was never closed on line 1\)"),
        (b"[" * 100_000, r"nested too deeply|neither valid JSON"),
        (b"[" * 5_000 + b"]" * 5_000, r"nested too deeply|neither valid JSON"),
        (b"\xff\xfe\x00c", r"not UTF-8"),
        (b"\n \n", r"empty"),
        (b"x\n" * 100_001, r"100,001 lines; the limit is 100,000"),
        (json.dumps([str(i) for i in range(100_001)]).encode(), r"names 100,001 classes; the limit is 100,000"),
        (b"a" * 2_000, r"Class 0's name in the labels file is 2,000 characters long"),
        (b"x" * (17 * 2**20), r"MB; the limit is 16 MB"),
        (b"cat", r"neither valid JSON"),  # with a .json name, plain text is not read as lines
    ],
    ids=[
        "gap",
        "word-key",
        "negative-key",
        "float-key",
        "bool-key",
        "twice",
        "number-name",
        "list-name",
        "dict-name",
        "blank-name",
        "empty-list",
        "scalar",
        "unclosed",
        "deep-open",
        "deep-closed",
        "not-utf8",
        "blank",
        "too-many-lines",
        "too-many-classes",
        "long-name",
        "huge",
        "json-name-text",
    ],
)
def test_bad_labels_files_are_refused_with_a_sentence(data: bytes, words: str) -> None:
    filename = "labels.json" if words in (r"neither valid JSON", r"holds a str") else "labels.txt"
    with pytest.raises(ModelFileError, match=words) as caught:
        parse_labels(data, filename)
    message = str(caught.value)
    assert message.endswith(".") and len(message) < 400 and "Traceback" not in message
