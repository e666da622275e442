"""The words people read: text they supply (class names from a labels file, file names) shown exactly as typed,
and plain words for what the engine calls by its code names (a layer's module class, a class without a name).

Streamlit renders Markdown in `st.markdown`, captions, alerts and button labels: a class name such as
`![x](http://host/pixel.png)` would make every viewer's browser fetch that URL, and `**a**`, `:red[a]`, `:cat:` or
`$x$` would be restyled. Its Markdown (GitHub's flavour) also turns `www.host.example/path`, `https://…` and
`name@host.example` into links by itself (autolinks), `&copy;` into ©, and a leading `- `, `+ ` or `1. ` into a
list. Raw HTML is never rendered there, but its characters must stay visible too.

And text must not hide what it is: right-to-left overrides and other bidirectional controls (which can make
`exe.png` of `gnp.exe`) are dropped, control characters become spaces, and a name with nothing visible left
(zero-width spaces only, say) is shown as "(unnamed)".
"""

from __future__ import annotations

import re
import unicodedata

from cnnvis_engine import LayerInfo

UNNAMED = "(unnamed)"

# What starts Markdown, Streamlit's directives (:red[..], :cat:, :material/..:) or LaTeX; `_` only where it could
# open or close emphasis (not inside a word such as conv_stem); `&` (entities) and `@` (e-mail autolinks). Dots,
# dashes and parentheses stay as they are, except the dot of `www.` (the start of a www autolink) and the
# list markers at the start: `- `, `+ `, `1. `, `1) `.
_MARKDOWN = re.compile(r"[\\`*\[\]!<>$:~#|/&@]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|(?i:(?<=www))\.|^[-+=]")
_ORDERED_LIST = re.compile(r"^(\d+)([.)])")
# What GitHub's Markdown links by itself. Streamlit's renderer finds these in the text after escapes are resolved
# (mdast-util-gfm-autolink-literal), so no escape stops them: such text is shown as inline code instead.
_AUTOLINK = re.compile(r"(?i)https?:/|www\.|mailto:|xmpp:|[-.\w+]@[-\w]+\.[-\w]")
_BACKTICKS = re.compile(r"`+")
# Bidirectional controls: LRE RLE PDF LRO RLO (U+202A–U+202E), LRI RLI FSI PDI (U+2066–U+2069), LRM RLM, ALM.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Characters that take no room or show nothing though Unicode calls them letters or symbols.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e\u034f")
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def visible(text: str) -> bool:
    """Whether `text` has at least one character a person can see."""
    return any(c not in _BLANK and unicodedata.category(c) not in _INVISIBLE_CATEGORIES for c in text)


def clean(text: object, fallback: str = UNNAMED) -> str:
    """`text` without bidirectional controls, with control characters (newlines, tabs, …) as spaces; `fallback`
    when something was there but nothing visible is left. The empty string stays empty."""
    raw = str(text)
    cleaned = _CONTROL.sub(" ", _BIDI.sub("", raw))
    if raw and not visible(cleaned):
        return fallback
    return cleaned


def plain(text: object) -> str:
    """`clean(text)` as Markdown that shows it as typed: no formatting, no entity, no list, no link. Its special
    characters are backslash-escaped (CommonMark escapes); text that would become a link whatever its escapes
    (`www.`, `http://`, an e-mail address) is put in a code span, where nothing is parsed."""
    cleaned = clean(text)
    if _AUTOLINK.search(cleaned):
        return code_span(cleaned)
    escaped = _MARKDOWN.sub(lambda match: "\\" + match.group(0), cleaned)
    return _ORDERED_LIST.sub(r"\1\\\2", escaped)


def code_span(text: str) -> str:
    """`text` as one CommonMark code span: fenced by one backtick more than its longest run of them, padded with
    a space where it starts or ends with a backtick or a space (the parser strips one from each side)."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# Module class -> what it does, for a person who does not read PyTorch. Unlisted classes are split into words.
LAYER_KINDS = {
    "Conv2d": "convolution",
    "Conv2dSame": "convolution",
    "ConvTranspose2d": "up-convolution",
    "BatchNorm2d": "batch norm",
    "BatchNormAct2d": "batch norm + activation",
    "GroupNorm": "group norm",
    "LayerNorm2d": "layer norm",
    "ReLU": "activation (ReLU)",
    "ReLU6": "activation (ReLU6)",
    "SiLU": "activation (SiLU)",
    "GELU": "activation (GELU)",
    "Hardswish": "activation (hard swish)",
    "Hardsigmoid": "gate (hard sigmoid)",
    "Sigmoid": "gate (sigmoid)",
    "MaxPool2d": "max pooling",
    "AvgPool2d": "average pooling",
    "AdaptiveAvgPool2d": "average pooling",
    "Sequential": "group of layers",
    "Bottleneck": "residual block",
    "BasicBlock": "residual block",
    "InvertedResidual": "inverted residual block",
    "DepthwiseSeparableConv": "depthwise separable block",
    "Conv2dNormActivation": "convolution + norm + activation",
    "ConvBnAct": "convolution + norm + activation",
    "SqueezeExcitation": "channel attention",
    "SqueezeExcite": "channel attention",
    "SEModule": "channel attention",
    "Identity": "pass-through (does nothing)",
    "Dropout": "dropout (off while explaining)",
    "Linear": "fully connected",
}


def layer_kind(kind: str) -> str:
    """ "batch norm + activation" for BatchNormAct2d; unknown classes as words ("MyBlock" -> "my block")."""
    if kind in LAYER_KINDS:
        return LAYER_KINDS[kind]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", kind).lower() or "layer"


def layer_label(layer: LayerInfo) -> str:
    """What the layer list shows: name, what the layer does, output size, its layout when it is not a plain map
    ("tokens · 14×14 patches + 1 class token", "channels-last 7×7") (and reuse)."""
    shape = "×".join(str(s) for s in layer.shape) or "—"
    layout = f" · {layer.layout.describe()}" if layer.layout.is_map and layer.layout.kind != "map" else ""
    reuse = f" · runs {layer.calls}×" if layer.calls > 1 else ""
    return f"{layer.name} · {layer_kind(layer.kind)} · {shape}{layout}{reuse}"


def layer_detail(layer: LayerInfo) -> str:
    """The technical detail for a tooltip: the module class, the output's shape in PyTorch's terms and how it is read
    as a map."""
    shape = " × ".join(str(s) for s in layer.shape)
    if layer.layout.kind == "tokens":
        c, (h, w), prefix = layer.shape[-1], layer.layout.grid, layer.layout.prefix
        dropped = f"the first {prefix} dropped, " if prefix else ""
        return (
            f"`{layer.name}` is a `{layer.kind}` module; its output is tokens × channels = {shape}: {dropped}the "
            f"last {h * w} tokens laid back on the {h}×{w} patch grid, so maps read it as {c} × {h} × {w}."
        )
    if layer.layout.kind == "channels_last":
        return (
            f"`{layer.name}` is a `{layer.kind}` module; its output is height × width × channels = {shape} "
            "(channels last), read as channels × height × width."
        )
    return f"`{layer.name}` is a `{layer.kind}` module; its output is channels × height × width = {shape}."


def not_a_map_label(layer: LayerInfo) -> str:
    """A layer that gives no map, for the list of those: name, kind, shape and why."""
    shape = "×".join(str(s) for s in layer.shape)
    return f"`{layer.name}` · {layer_kind(layer.kind)} · {shape}: {layer.layout.reason}"


def class_name(names: tuple[str, ...], index: int) -> str:
    """A class as a person reads it: "tabby (281)"; a class without a name once: "class 1", not "class 1 (1)"."""
    name = names[index] if 0 <= index < len(names) else ""
    if not name or re.fullmatch(rf"(class\s*)?{index}", name.strip(), flags=re.IGNORECASE):
        return f"class {index}"
    return f"{name} ({index})"
