"""What every method shares: its result types, the inputs the explainer hands it, its declarations and the
registry.

Adding a method is one small class: declare `needs` (what the explainer must capture), `layer` (which layers it
takes), `drawing` (how its result is drawn) and its `options`, and write `compute` over a batch. Everything
else reads these declarations: the explainer plans its passes and checks layers from them, the layer list
offers the layers of the method's kind, `render.draw` draws the result the declared way, and the dashboard,
the CLI and the reports list, caption and draw the method without knowing its name. The explainer merges the
needs of all requested methods, so a panel set costs one forward pass and at most one plain and one guided
backward pass, for one image or a whole batch.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodError, shown
from ..targets import Target
from ..tracing import LayerInfo, LayerKind, Trace

if TYPE_CHECKING:  # tracing reads the method registry at run time, so its Trace is named for the checker only
    from ..attention import AttentionRecord
    from ..tracing import Trace

Need = Literal[
    "activation",
    "layer_gradient",
    "input_gradient",
    "guided_input_gradient",
    "cam",
    "module",
    "forward",
    "attention",  # every block's attention probabilities (`attention.record`)
    "attention_gradient",  # and d score / d them
]
# How a result is drawn (`render.draw`): its (H, W) map laid over the picture; a heat map of a sparse gradient
# map stretched to its 99th percentile; its `rgb` picture; or a grid of its (K, h, w) tiles.
Drawing = Literal["overlay", "heatmap", "rgb", "grid"]


@dataclass(frozen=True)
class MethodResult:
    """One image's result. `map`: float32 in [0, 1] at the input resolution, for display ((H, W), or
    (K, H, W) for channel sets). `raw`: the method's own un-normalised output at its native resolution.
    `rgb`: an optional (H, W, 3) float32 picture in [0, 1] for methods whose natural picture has colour."""

    method: str
    layer: str | None = None
    map: np.ndarray | None = None
    raw: np.ndarray | None = None
    rgb: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""  # why the method does not apply; empty when it does

    @property
    def applicable(self) -> bool:
        return not self.reason

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(map, raw) of a result that applies; asked of one that does not, a MethodError with its reason."""
        if self.map is None or self.raw is None:
            raise MethodError(self.reason or f"The method {self.method} gave no map here.")
        return self.map, self.raw

    @classmethod
    def not_applicable(cls, method: str, reason: str, layer: str | None = None) -> MethodResult:
        return cls(method=method, layer=layer, reason=reason)


@dataclass
class MethodOutput:
    """A method's output for a batch: tensors with a leading batch dimension N (or 1 when `shared`)."""

    map: torch.Tensor
    raw: torch.Tensor
    rgb: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # the same for every sample
    sample_meta: dict[str, Sequence[Any]] = field(default_factory=dict)  # one entry per sample
    shared: bool = False  # one result for all samples (kernels)

    def numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Every array moved to the CPU once, for the whole batch."""
        return to_numpy(self.map), to_numpy(self.raw), None if self.rgb is None else to_numpy(self.rgb)

    def results(self, method: str, layer: str | None, count: int) -> list[MethodResult]:
        maps, raws, rgbs = self.numpy()
        out = []
        for i in range(count):
            j = 0 if self.shared else i
            meta = {**self.meta, **{key: values[j] for key, values in self.sample_meta.items()}}
            out.append(MethodResult(method, layer, maps[j], raws[j], None if rgbs is None else rgbs[j], meta))
        return out


@dataclass
class MethodInputs:
    """What the explainer captured for a batch of N images. Tensors are detached and keep the batch dim."""

    layer: str | None
    module: nn.Module | None
    input_size: tuple[int, int]
    targets: tuple[Target, ...]
    x: torch.Tensor  # (N, 3, H, W): the model's input
    output: torch.Tensor | None = None  # (N, ...): the model's output on x, from the recorded pass
    activation: torch.Tensor | None = None  # (N, C, h, w)
    layer_gradient: torch.Tensor | None = None  # (N, C, h, w): d score / d activation
    input_gradient: torch.Tensor | None = None  # (N, 3, H, W): d score / d input
    guided_input_gradient: torch.Tensor | None = None  # (N, 3, H, W) with guided ReLUs
    cam_weights: torch.Tensor | None = None  # (N, C): the Linear's weights for each sample's target
    cam_bias: torch.Tensor | None = None  # (N,)
    # For extra passes: forward(x (M, 3, H, W), layer=None) -> (output, the layer's output or None); a model failure
    # there is a ModelError that says what may help (`recording.extra_pass`)
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None
    attention: AttentionRecord | None = None  # every block's attention (and its gradient), for "attention" needs
    meta: dict[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """(M, ...) outputs of M = k·N inputs laid out sample-major -> (M,) target scores."""
        per_sample = output.shape[0] // len(self.targets)
        return torch.cat(
            [target.score(output[i * per_sample : (i + 1) * per_sample]) for i, target in enumerate(self.targets)]
        )


_Captured = TypeVar("_Captured")


def captured(value: _Captured | None, need: Need | Literal["module"]) -> _Captured:
    """A field of `MethodInputs` that the method declared in its `needs` (the explainer fills every declared
    need), checked present; its absence is a planning bug, reported as a MethodError rather than a crash."""
    if value is None:
        raise MethodError(f"This method needs the model's recorded {need.replace('_', ' ')}, which is missing here.")
    return value


def read_option(
    inputs: MethodInputs,
    name: str,
    default: float,
    kind: type[int | float] = int,
    low: float = 1,
    high: float = float("inf"),
) -> float:
    """inputs.options[name] (or `default`) as `kind`, refused with a MethodError unless `low` <= it <= `high`.
    `high` bounds the work one call may ask for (see the methods' MAX_* constants)."""
    given = inputs.options.get(name, default)
    try:
        value = kind(given)
    except (TypeError, ValueError, OverflowError):
        shown = repr(given) if len(repr(given)) <= 40 else repr(given)[:40] + "…"
        raise MethodError(f"The setting '{name}' must be a number; got {shown}.") from None
    if not value >= low:  # also refuses NaN
        raise MethodError(f"The setting '{name}' must be at least {low}; got {value}.")
    if value > high:
        raise MethodError(
            f"The setting '{name}' may be at most {high:,} (a bound on the work of one call); got {value:,}."
        )
    return value


@dataclass(frozen=True)
class Option:
    """One setting of a method: its default, its bounds, what it means in words, and the value the dashboard runs
    it with (`quick`: fewer samples, so a panel takes seconds on a CPU; None: the default).

    `dashboard`: the narrower range the dashboard offers (its number box and its links), where low–high would let
    one panel cost minutes; None: low to `quick` where the option has one, else low to high. Either way the
    dashboard can make a panel cheaper than its own values, never dearer. `dashboard_range()` gives the range."""

    name: str
    default: float
    label: str
    low: float = 1
    high: float = float("inf")
    kind: type = int
    quick: float | None = None
    dashboard: tuple[float, float] | None = None

    def dashboard_range(self) -> tuple[float, float]:
        """(low, high) the dashboard's widget and links allow for this setting."""
        if self.dashboard is not None:
            return self.dashboard
        return self.low, self.high if self.quick is None else self.quick

    def read(self, inputs: MethodInputs, default: float | None = None) -> float:
        """This setting's value in `inputs` (`default` overrides a default that depends on another setting)."""
        return read_option(
            inputs, self.name, self.default if default is None else default, self.kind, self.low, self.high
        )


class Method(ABC):
    """One visualisation. Subclasses set the class attributes and implement `compute`; what the rest of the
    system needs to know about a method it reads from these (never from the method's name).

    `slow` (the method runs extra forward passes), `uses_layer` (the caller's layer applies), `scorable` (one
    (H, W) map per image, so faithfulness can score it) and `randomisable` (cheap enough and map-like, so the
    Sanity test can recompute it for every randomised layer) follow from the declarations unless a class sets
    them."""

    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]  # one plain sentence for a non-coder
    panel_title: ClassVar[str] = ""  # the title over its panel, if not `title`
    paper: ClassVar[str] = ""
    needs: ClassVar[frozenset[Need]] = frozenset()
    layer: ClassVar[LayerKind] = "spatial"
    drawing: ClassVar[Drawing] = "overlay"
    options: ClassVar[tuple[Option, ...]] = ()
    legend: ClassVar[tuple[str, str] | None] = ("0: no evidence", "1: strongest in this map")  # None: no colour bar
    hover: ClassVar[str] = ""  # what a hovered value is; "" = the title
    # Its map follows the picture's edges more than the network's weights (Adebayo et al. 2018; the Sanity page shows
    # it), so a good faithfulness score comes with that caveat.
    follows_edges: ClassVar[bool] = False
    # derived in __init_subclass__ unless set
    slow: ClassVar[bool]
    uses_layer: ClassVar[bool]
    scorable: ClassVar[bool]
    randomisable: ClassVar[bool]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        derived: dict[str, Callable[[], bool]] = {
            "slow": lambda: "forward" in cls.needs,
            "uses_layer": lambda: cls.layer in ("spatial", "conv"),
            "scorable": lambda: cls.drawing != "grid",
            "randomisable": lambda: cls.scorable and not cls.slow,
        }
        for attribute, value in derived.items():
            if attribute not in cls.__dict__:
                setattr(cls, attribute, value())

    @abstractmethod
    def compute(self, inputs: MethodInputs) -> MethodOutput: ...

    @classmethod
    def setting(cls, inputs: MethodInputs, name: str, default: float | None = None) -> float:
        """The declared option `name`, read from `inputs` and checked against its bounds."""
        return next(option for option in cls.options if option.name == name).read(inputs, default)

    @classmethod
    def quick_options(cls) -> dict[str, float]:
        """The settings the dashboard runs this method with."""
        return {option.name: option.quick for option in cls.options if option.quick is not None}

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        """The panel's caption in plain words: where the map comes from and what it explains."""
        return f"{where(result)} · {target}" if result.layer else target

    @classmethod
    def refuses(cls, trace: Trace, targets: Sequence[Target]) -> str:
        """Why this method cannot explain `targets` on a model with this `tracing.Trace`, beyond what its needs and
        layer kind say (empty: it can)."""
        return ""

    @classmethod
    def note(cls, result: MethodResult) -> str:
        """A remark the panel shows under its picture (empty: none)."""
        return ""

    @staticmethod
    def hover_values(raw: np.ndarray) -> np.ndarray:
        """The values shown on hover, one per pixel of the drawn map (one per tile cell for grids): `raw` when it is
        a map, else the largest magnitude over its channels."""
        return raw if raw.ndim == 2 else np.abs(raw).max(axis=0)

    # For `drawing = "grid"`: the tiles drawn, (K, h, w) maps or (K, h, w, 3) patches in [0, 1], and their size.
    @staticmethod
    def tiles(result: MethodResult) -> np.ndarray:
        return result.arrays()[0]

    @staticmethod
    def tile_size(count: int) -> int:
        return 96 if count <= 36 else 64


def where(result: MethodResult) -> str:
    """The layer a result was read at, with its layout when it is not a plain map ("blocks.11.norm1 (tokens ·
    14×14 patches + 1 class token)")."""
    layout = result.meta.get("layout", "")
    return f"{result.layer} ({layout})" if layout and not layout.startswith("map") else str(result.layer)


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


MAX_METHOD_NAMES = 1000  # names read from one `methods` argument (an endless generator stops here)


def method_names(methods: Iterable[str]) -> list[str]:
    """The method names, each once, in order, each a registered method. A string is refused: it would be read
    letter by letter."""
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


FLAT_SPAN = 1e-5  # a map whose values differ by less than this share of their magnitude is flat


def layers_for(trace: Trace, method: str) -> list[LayerInfo]:
    """The layers of `trace` that registered `method` may use: those of the kind it declares."""
    return trace.of_kind(METHODS[method].layer)


def default_layer(trace: Trace, method: str) -> str | None:
    """The layer registered `method` explains by default on `trace` (None for methods that take no layer)."""
    return trace.default_of_kind(METHODS[method].layer)


def methods_at(layer: LayerInfo) -> frozenset[str]:
    """The registered methods that may use `layer`."""
    return frozenset(name for name, method in METHODS.items() if method.layer in layer.kinds)


def normalize(values: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """Min-max to [0, 1] over the last `dims` dimensions; a flat map becomes zeros (never NaN). Flat includes
    a constant map plus rounding noise (bilinear upsampling of a constant leaves differences of a few ulps),
    which would otherwise be stretched into full-contrast stripes."""
    flat = values.flatten(-dims)
    shape = (*flat.shape[:-1], *([1] * dims))
    low, high = flat.amin(dim=-1).view(shape), flat.amax(dim=-1).view(shape)
    span = high - low
    varies = span > FLAT_SPAN * torch.maximum(low.abs(), high.abs())
    safe = torch.where(varies, span, torch.ones_like(span))
    return torch.where(varies, (values - low) / safe, torch.zeros_like(values)).nan_to_num(0.0)


def upsample(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) or (N, K, h, w) -> the same at `size`, bilinear."""
    batched = values[:, None] if values.dim() == 3 else values
    out = F.interpolate(batched.float(), size=size, mode="bilinear", align_corners=False)
    return out[:, 0] if values.dim() == 3 else out


def to_numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().float().cpu().numpy().astype(np.float32, copy=False)


def gradient_rgb(gradient: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) gradients -> (N, H, W, 3) pictures in [0, 1]: centred at grey, ±3 std span the range; a
    grayscale model's one channel (C = 1) is drawn gray."""
    centred = gradient - gradient.mean(dim=(1, 2, 3), keepdim=True)
    std = centred.flatten(1).std(dim=1).view(-1, 1, 1, 1)
    scaled = torch.where(std > 0, centred / (std * 6).clamp_min(1e-30) + 0.5, torch.full_like(centred, 0.5))
    return scaled.clamp(0, 1).expand(-1, 3, -1, -1).permute(0, 2, 3, 1)
