"""Audits of a whole picture set for shortcuts (Spectral Relevance Analysis, SpRAy; Lapuschkin et al. 2019,
https://arxiv.org/abs/1902.10178): explain every picture, cluster each class's maps spectrally, flag the
clusters whose maps or answers point at a shortcut, at any share of their class.

- `dataset`: which pictures and labels (folder of class folders, list, CSV); non-pictures skipped and listed.
- `maps`: streaming batched explanation into float16 size×size maps.
- `spectral`: kNN graph, normalised Laplacian, eigengap, clusters, conductance, 2-D layout.
- `verdict`: whether a cluster points at a shortcut (a spot off the object, maps off or all over it, a sharp
  accuracy gap), at any share of its class; `describe`: why, in one sentence.
- `localisation`: pointing game and relevance mass inside known boxes or masks.
- `analysis`: `audit()` and its results; `ray_engine`: the same on Ray Data (optional extra).
- `report`: the HTML report; the command (`cnnvis audit`, `python -m cnnvis_engine audit`) is `cnnvis.audit`'s.
"""

from .analysis import Audit, ClassView, Cluster, audit
from .dataset import AuditError, ImageSet, Skipped, read_image_set
from .localisation import pointing_game, relevance_mass
from .verdict import SUSPICIOUS

__all__ = [
    "SUSPICIOUS",
    "Audit",
    "AuditError",
    "ClassView",
    "Cluster",
    "ImageSet",
    "Skipped",
    "audit",
    "pointing_game",
    "read_image_set",
    "relevance_mass",
]
