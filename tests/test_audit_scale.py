"""The audit's analysis of one large class: the sparse eigensolver, the reduced neighbour search and the sampled
layout agree with the exact ones (bench/audit_bench.py --scale times them at 1k/3k/10k)."""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh

from bench.audit_bench import planted_maps
from cnnvis_engine.audit import spectral


def test_the_sparse_eigensolver_gives_the_dense_spectrum():
    maps, _ = planted_maps(spectral.DENSE_LIMIT + 300)
    affinity = spectral.knn_affinity(maps.reshape(len(maps), -1), 10)
    values, vectors = spectral.laplacian_spectrum(affinity, 6)  # sparse: beyond DENSE_LIMIT
    n = affinity.shape[0]
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    scale = np.diag(1 / np.sqrt(degree))
    exact = eigh(np.eye(n) - scale @ affinity.toarray() @ scale, subset_by_index=[0, 5], eigvals_only=True)
    np.testing.assert_allclose(values, np.clip(exact, 0, None), atol=1e-6)
    laplacian = np.eye(n) - scale @ affinity.toarray() @ scale
    residual = np.linalg.norm(laplacian @ vectors - vectors * values, axis=0)
    assert residual.max() < 1e-5  # they are eigenvectors of L, not of something else


def test_a_large_class_finds_its_planted_groups():
    maps, truth = planted_maps(spectral.DENSE_LIMIT + 500)
    result = spectral.analyse_class(maps)
    assert result.clusters == 3
    for group in range(3):  # each planted group is one cluster, whole
        assert len(set(result.labels[truth == group])) == 1
    assert len(set(result.labels)) == 3


def test_the_sampled_layout_places_every_map_near_its_group():
    maps, truth = planted_maps(spectral.LAYOUT_SAMPLE + 400, seed=1)
    layout = spectral.layout_2d(maps)
    assert layout.shape == (len(maps), 2) and np.isfinite(layout).all()
    centres = np.stack([layout[truth == g].mean(axis=0) for g in range(3)])
    nearest = np.argmin(((layout[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == truth).mean() > 0.98  # interpolated points land among their own group
