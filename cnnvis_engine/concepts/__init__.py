"""Concepts: the channels (or groups of channels) a decision rests on, where each one is, what they draw on and what
they look for. Re-exports only.

- `Explainer.concepts` and `Explainer.sub_concepts` are the entry points of the ranking; see `relevance`.
- `reference_set`: the reference pictures (a list, a folder, a zip, the samples); `reference_pass`: one batch's
  per-channel maxima and contributions; `receptive`: a layer's receptive field, measured from gradients;
  `reference_tops` / `reference_store`: the index and its Parquet file; `reference`: `reference_index`;
  `reference_ray`: its batches on Ray Data; `atlas` / `cli`: `cnnvis concepts` and its HTML atlas.
"""

from .groups import DEFAULT_GROUPS
from .receptive import ReceptiveField, measure_receptive_fields
from .reference import reference_index
from .reference_set import SAMPLES, ReferenceSet, ReferenceSetError, read_reference_set
from .reference_tops import ConceptsError, LayerTops, ReferenceIndex, TopImage
from .relevance import DEFAULT_TOP, concepts, sub_concepts
from .results import ConceptResult

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_TOP",
    "SAMPLES",
    "ConceptResult",
    "ConceptsError",
    "LayerTops",
    "ReceptiveField",
    "ReferenceIndex",
    "ReferenceSet",
    "ReferenceSetError",
    "TopImage",
    "concepts",
    "measure_receptive_fields",
    "read_reference_set",
    "reference_index",
    "sub_concepts",
]
