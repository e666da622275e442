"""The Sanity test's outcome beside a map's faithfulness scores: a map can score well on deletion and insertion
and still barely depend on what the network learned (Adebayo et al. 2018). When this session has run the
randomisation test for a method on the same model, image, layer and class, Explore says what it found.

The outcome is kept in the session (`state.SANITY_OUTCOMES`) when the Sanity page draws a test, so Explore never
runs or re-reads a test itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from cnnvis_engine.sanity import RandomisationStep

from . import state
from .context import Context
from .typed_state import SanityRun

DEPENDS = 0.5  # |Spearman| with the trained map below this once the weights are random: the map depends on them
MODES = ("cascading", "independent")  # the outcome shown first, when both were run


@dataclass(frozen=True)
class Outcome:
    """How similar the method's map stays to the trained model's map once weights are random: `lowest` is the
    Spearman correlation after every layer is random (cascading) or at the most damaging single layer."""

    mode: str
    lowest: float
    steps: int

    @property
    def depends(self) -> bool:
        return abs(self.lowest) < DEPENDS

    def short(self) -> str:
        """For a table cell: "falls to 0.12: depends on the weights"."""
        verb = "falls to" if self.depends else "stays at"
        meaning = "depends on the weights" if self.depends else "barely depends on the weights"
        return f"{verb} {self.lowest:.2f}: {meaning}"

    def sentence(self, title: str) -> str:
        when = (
            "when all layers are random"
            if self.mode == "cascading"
            else "when its most important layer alone is random"
        )
        verb = "falls to" if self.depends else "stays at"
        meaning = (
            "it depends on what the network learned"
            if self.depends
            else "it barely depends on what the network learned, whatever its faithfulness scores say"
        )
        return f"Sanity: {title}'s similarity to the trained map {verb} {self.lowest:.2f} {when} — {meaning}."


def outcome(steps: Sequence[RandomisationStep], mode: str) -> Outcome:
    """The outcome of a test's steps (`RandomisationStep`s: the trained map first, ρ = 1)."""
    randomised = [step.spearman for step in steps[1:]] or [1.0]
    lowest = randomised[-1] if mode == "cascading" else min(randomised, key=abs)
    return Outcome(mode, float(lowest), len(steps))


def remember(run: SanityRun, steps: Sequence[RandomisationStep]) -> None:
    """The Sanity page drew the test `run` (a `Context.sanity_run` key): keep its outcome for Explore."""
    kept = dict(state.get(state.SANITY_OUTCOMES) or {})
    kept.pop(run, None)
    kept[run] = outcome(steps, run[-1])
    while len(kept) > state.MAX_SANITY_RUNS:
        kept.pop(next(iter(kept)))
    st.session_state[state.SANITY_OUTCOMES] = kept


def found(ctx: Context, method: str) -> Outcome | None:
    """The outcome of this session's test of `method` on the context's model, image, layer and class, if run."""
    kept = state.get(state.SANITY_OUTCOMES) or {}
    for mode in MODES:
        result = kept.get(ctx.sanity_run(method, mode))
        if result is not None:
            return result
    return None


NOT_RUN = "not run yet (Sanity page)"
HELP = (
    "The Sanity page's randomisation test (Adebayo et al. 2018), where this session has run it for this model, "
    "image, layer and class: the Spearman rank correlation of the map with the trained network's map once the "
    f"weights are random. Below {DEPENDS}: the map depends on what the network learned; above: it mostly shows "
    "the picture itself, however well it scores here."
)


def column(ctx: Context, methods: Sequence[str]) -> list[str]:
    """One table cell per method: the test's outcome in a few words, or that it was not run."""
    return [result.short() if (result := found(ctx, m)) is not None else NOT_RUN for m in methods]


def sentences(ctx: Context, methods: Sequence[str], titles: dict[str, str]) -> list[str]:
    return [result.sentence(titles[m]) for m in methods if (result := found(ctx, m)) is not None]
