"""Concepts: the channels (or groups of channels) a decision rests on, where each one is, and what they draw on.
`Explainer.concepts` and `Explainer.sub_concepts` are the entry points; see `relevance`."""

from .groups import DEFAULT_GROUPS
from .relevance import DEFAULT_TOP, concepts, sub_concepts
from .results import ConceptResult

__all__ = ["DEFAULT_GROUPS", "DEFAULT_TOP", "ConceptResult", "concepts", "sub_concepts"]
