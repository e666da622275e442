"""One batch of reference pictures through the model: per picture and channel of each chosen layer, the largest
activation and the contribution to the predicted class, with where each was largest.

For a batch x (B, C, H, W) with predicted classes ŷ_i: ONE forward pass (recorded by `recording.Recorder.lean`:
the chosen layers' outputs only, the graph from the earliest of them on) and ONE backward pass
(`torch.autograd.grad` of y = Σ_i output_i[ŷ_i] to every chosen layer at once; samples are independent in eval
mode). Each layer is read in its canonical (B, K, h, w) view (`layouts.Layout.view`: channels-last and token
layers too). Then, per channel k,

    ActMax   a_k = max_{h,w} A_k[h, w]                      (Olah et al. 2017; the top images of a unit)
    RelMax   r_k = Σ_{h,w} A_k[h, w] · ∂y/∂A_k[h, w]         (gradient × activation: the channel's contribution)

with the flat positions argmax A_k and argmax A_k·∂y/∂A_k. The layers are traced once by a one-picture pass without
a graph on a blank picture (the layer list, its layouts, the channel counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..audit.dataset import Skipped
from ..errors import ImageError, LayerError
from ..images import DecodedImage
from ..models.bundle import ModelBundle, fast_layout
from ..recording import RecordedPass, Recorder
from ..targets import ClassTarget
from ..tracing import LayerInfo, Trace
from .reference_set import ReferenceSet


@dataclass
class BatchStats:
    """One batch's numbers for the pictures that could be read (`indices` into the reference set)."""

    indices: np.ndarray  # (B,) int64
    predicted: np.ndarray  # (B,) int64: top-1 class
    activation: list[np.ndarray]  # per layer (B, K) float32: max_{h,w} A_k
    activation_at: list[np.ndarray]  # per layer (B, K) int64: flat position h·w of that maximum
    contribution: list[np.ndarray]  # per layer (B, K) float32: Σ_{h,w} A_k·∂y/∂A_k
    contribution_at: list[np.ndarray]  # per layer (B, K) int64: flat position of max A_k·∂y/∂A_k
    skipped: list[Skipped] = field(default_factory=list)


class ChannelPass:
    """Runs batches of one model through `stats`; keeps its recorder (and so its traces) between batches."""

    def __init__(self, bundle: ModelBundle, layers: Sequence[str]) -> None:
        self.bundle = bundle
        self.layers = list(layers)
        self.recorder = Recorder(bundle)
        self.trace: Trace | None = None

    def infos(self) -> list[LayerInfo]:
        """The chosen layers as traced (once, on a blank picture at the model's input size); LayerError for an
        unknown layer or one that is not a map (a vector, attention weights)."""
        if self.trace is None:
            height, width = self.bundle.input_size
            blank = torch.zeros(1, self.bundle.channels, height, width, device=self.bundle.device)
            self.trace = self.recorder.whole(blank, [np.zeros((1, 1, 3), np.uint8)], [()], graph=False).trace
        infos = []
        for name in self.layers:
            info = self.trace.get(name)
            if not info.layout.is_map:
                raise LayerError(
                    f"'{name}' outputs {'×'.join(map(str, info.shape)) or 'no tensor'}, not channels over a picture, "
                    "so it has no reference images; pick a layer with channels × height × width."
                )
            infos.append(info)
        return infos

    def stats_of(self, reference: ReferenceSet, chosen: Sequence[int]) -> BatchStats:
        """Decode the pictures `chosen` of `reference` and run them as one batch; unreadable ones are skipped."""
        decoded: list[DecodedImage] = []
        kept: list[int] = []
        skipped: list[Skipped] = []
        for i in chosen:
            try:
                decoded.append(reference.load(i))
                kept.append(i)
            except ImageError as error:
                skipped.append(Skipped(reference.names[i], str(error)))
        if not kept:
            empty = [np.zeros((0, 0), np.float32) for _ in self.layers]
            place = [np.zeros((0, 0), np.int64) for _ in self.layers]
            return BatchStats(np.zeros(0, np.int64), np.zeros(0, np.int64), empty, place, empty, place, skipped)
        x, displays, notes = self.bundle.batch(decoded)
        out = self.stats(x, displays, notes)
        out.indices = np.array(kept, np.int64)
        out.skipped = skipped
        return out

    def stats(
        self, x: torch.Tensor, displays: list[np.ndarray] | None = None, notes: list[tuple[str, ...]] | None = None
    ) -> BatchStats:
        """The batch x (B, C, H, W), normalised, on the model's device: one forward, one backward (see the module's
        docstring). `indices` are 0..B-1."""
        layouts = [info.layout for info in self.infos()]
        displays = displays or [np.zeros((1, 1, 3), np.uint8)] * len(x)
        notes = notes or [()] * len(x)
        fp = self._forward(fast_layout(x), displays, notes)
        with fp.lock:
            fp.refresh(set(self.layers))
            predicted = fp.output.detach().argmax(dim=1)
            targets = tuple(ClassTarget(int(p)) for p in predicted)
            score = fp.score(targets)
            fp.plain_pass(targets, score, self.layers)  # one autograd.grad call for all of them
            grads = [fp.gradient(targets, score, name) for name in self.layers]
            values = [fp.value(name) for name in self.layers]
        out = BatchStats(np.arange(len(x), dtype=np.int64), predicted.cpu().numpy().astype(np.int64), [], [], [], [])
        for layout, value, grad in zip(layouts, values, grads):
            a = layout.view(value).float().flatten(2)  # (B, K, h·w)
            r = a * layout.view(grad).float().flatten(2)
            top, at = a.max(dim=2)
            out.activation.append(top.cpu().numpy())
            out.activation_at.append(at.cpu().numpy().astype(np.int64))
            out.contribution.append(r.sum(dim=2).cpu().numpy())
            out.contribution_at.append(r.argmax(dim=2).cpu().numpy().astype(np.int64))
        return out

    def _forward(self, x: torch.Tensor, displays: list[np.ndarray], notes: list[tuple[str, ...]]) -> RecordedPass:
        """A lean pass: only the chosen layers kept, the graph from the earliest of them (the later ones are cloned
        into the graph, so one backward reaches them all); a whole recorded pass if the model ran other modules."""
        assert self.trace is not None
        # The layer whose output is ready first (by when its last call ended: a block ends after the layers inside it).
        earliest = min(self.layers, key=lambda name: self.trace.get(name).end)
        fp = self.recorder.lean(x, displays, notes, self.trace, frozenset(self.layers), frozenset({earliest}))
        if fp is None:
            fp = self.recorder.whole(x, displays, notes, graph=True)
        return fp
