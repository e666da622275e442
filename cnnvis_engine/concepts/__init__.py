"""Concepts: the channels (or groups of channels) a decision rests on, where each one is, what they draw on, and
what else makes them fire.

This package's own names are the decision's side, which the explainer uses (`Explainer.concepts`,
`Explainer.sub_concepts`): `relevance` (gradient × activation, conditional maps; `graph`, `regions`, `groups` for
DFF, `results` for `ConceptResult`).

The reference index sits above the explainer (it reads picture sets with the audit's bounded readers), so it is
imported from its own modules, never re-exported here: `reference.reference_index`; `reference_set` (the pictures: a
list, a folder, a zip, the samples), `reference_pass` (one batch's per-channel maxima and contributions),
`receptive` (receptive fields measured from gradients), `reference_tops` / `reference_store` (the index and its
Parquet file), `reference_ray` (its batches on Ray Data), `atlas` (the HTML atlas of `cnnvis concepts`).
"""

from .groups import DEFAULT_GROUPS
from .relevance import DEFAULT_TOP, concepts, sub_concepts
from .results import ConceptResult

__all__ = ["DEFAULT_GROUPS", "DEFAULT_TOP", "ConceptResult", "concepts", "sub_concepts"]
