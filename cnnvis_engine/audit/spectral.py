"""Spectral relevance analysis (SpRAy; Lapuschkin et al. 2019, "Unmasking Clever Hans predictors",
https://arxiv.org/abs/1902.10178) for the maps of one class.

1. A k-nearest-neighbour graph of the maps (Euclidean on the size×size maps, each summing to 1), made
   symmetric: A_ij = 1 where i is among j's neighbours or j among i's.
2. The normalised Laplacian L = I − D^{-1/2} A D^{-1/2} and its smallest eigenvalues 0 = λ_1 ≤ λ_2 ≤ …;
   their eigenvectors, row-normalised, are the spectral embedding (Ng, Jordan & Weiss 2001).
3. The number of clusters c is where the eigengap λ_{c+1} − λ_c is largest (or given); k-means on the
   embedding assigns them.
4. Each cluster's conductance φ(C) = cut(C, V∖C) / min(vol C, vol V∖C) in the graph (0: nothing links it to the
   rest of its class). The verdict (`verdict.weigh`) reads it beside the maps and answers; it no longer decides
   alone: a planted corner mark on half a class gave φ ≈ 0.27, and the old score's (1 − share) factor could never
   flag a shortcut that covers half a class or more.

A 2-D t-SNE layout of the maps (van der Maaten & Hinton 2008) is for display only.

At scale (issue 24: one class of 10,000 maps took 55 s to cluster and 120 s to lay out): the graph is built on
float32 maps (the same neighbours as float64 on the tests' sets and on 10,000 synthetic maps) and, beyond
DENSE_LIMIT maps, on their first 64 principal components (maps are smooth: a 32×32 map has far fewer than 1,024
degrees of freedom); there the eigenvectors come from Lanczos on the normalised adjacency's largest eigenvalues (λ(L) = 1 − μ(D^{-1/2} A
D^{-1/2})), a sparse product per step, instead of shift-invert on L, which factorises the graph (28 s → 0.3 s at
10,000); and t-SNE lays out at most LAYOUT_SAMPLE maps drawn at random, each other map placed at the mean position
of its 5 nearest drawn maps (t-SNE's cost grows faster than n; a scatter of 10,000 points shows no more than one of
1,000 with the rest interpolated, and every map still has its point to select).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.linalg import eigh
from scipy.sparse.linalg import eigsh
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors, kneighbors_graph

MIN_PICTURES = 4  # fewer than this in a class: no graph worth the name; the class is one cluster
DENSE_LIMIT = 1500  # up to this many pictures, the whole eigendecomposition (exact, and fast enough)
LAYOUT_SAMPLE = 1000  # t-SNE lays out at most this many maps; the others are placed among their neighbours
REDUCED_DIMENSIONS = 64  # beyond DENSE_LIMIT maps, neighbours are found among their first principal components


@dataclass(frozen=True)
class ClassSpectrum:
    """The spectral analysis of one class's maps; `labels` (n,) give each map's cluster 0..clusters-1."""

    eigenvalues: np.ndarray  # (m,) ascending
    labels: np.ndarray  # (n,) int
    clusters: int
    conductance: np.ndarray  # (clusters,)
    neighbours: int  # k of the kNN graph actually used
    note: str = ""  # why the analysis was reduced (a small class), if it was


def knn_affinity(maps: np.ndarray, neighbours: int) -> sparse.csr_matrix:
    """(n, d) maps -> (n, n) symmetric 0/1 affinity of the `neighbours`-nearest-neighbour graph, no self-loops.
    Beyond DENSE_LIMIT maps the distances are taken on the first REDUCED_DIMENSIONS principal components."""
    x = np.asarray(maps, np.float32)
    if len(x) > DENSE_LIMIT and x.shape[1] > REDUCED_DIMENSIONS:
        x = PCA(REDUCED_DIMENSIONS, svd_solver="randomized", random_state=0).fit_transform(x)
    graph = kneighbors_graph(x, neighbours, mode="connectivity", include_self=False)
    return graph.maximum(graph.T).tocsr()


def laplacian_spectrum(affinity: sparse.csr_matrix, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` smallest eigenvalues (ascending) of L = I − D^{-1/2} A D^{-1/2}, and their eigenvectors
    (n, count)."""
    n = affinity.shape[0]
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    scale = sparse.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    adjacency = (scale @ affinity @ scale).tocsr()  # D^{-1/2} A D^{-1/2}; L = I − this
    count = min(count, n)
    if n <= DENSE_LIMIT or count >= n - 1:
        values, vectors = eigh(sparse.identity(n) - adjacency.toarray(), subset_by_index=[0, count - 1])
    else:
        largest, vectors = eigsh(adjacency, k=count, which="LA", tol=1e-8, v0=np.sqrt(degree))
        values = 1.0 - largest
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
    return np.clip(values, 0, None), vectors


def eigengap(eigenvalues: np.ndarray, max_clusters: int) -> int:
    """The c in 1..max_clusters with the largest gap λ_{c+1} − λ_c (eigenvalues ascending, λ_1 first)."""
    usable = eigenvalues[: max_clusters + 1]
    if len(usable) < 2:
        return 1
    return int(np.argmax(np.diff(usable))) + 1


def conductance(affinity: sparse.csr_matrix, labels: np.ndarray, clusters: int) -> np.ndarray:
    """φ(C) = cut(C, V∖C) / min(vol C, vol V∖C) per cluster; 0 for a cluster that is the whole graph."""
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    total = degree.sum()
    out = np.zeros(clusters)
    for c in range(clusters):
        inside = labels == c
        vol = degree[inside].sum()
        rest = total - vol
        if vol == 0 or rest == 0:
            continue
        internal = affinity[inside][:, inside].sum()
        out[c] = (vol - internal) / min(vol, rest)
    return out


def analyse_class(
    maps: np.ndarray, *, neighbours: int = 10, clusters: int | None = None, max_clusters: int = 8, seed: int = 0
) -> ClassSpectrum:
    """SpRAy's clustering of one class: (n, size, size) or (n, d) maps -> ClassSpectrum."""
    x = maps.reshape(len(maps), -1).astype(np.float64)
    n = len(x)
    if n < MIN_PICTURES:
        return ClassSpectrum(
            np.zeros(1),
            np.zeros(n, int),
            1,
            np.zeros(1),
            0,
            f"only {n} pictures: too few to cluster (at least {MIN_PICTURES}), kept as one group",
        )
    note = ""
    k = min(neighbours, n - 1)
    if k < neighbours:
        note = f"only {n} pictures: the neighbour graph uses {k} neighbours instead of {neighbours}"
    affinity = knn_affinity(x, k)
    limit = min(max_clusters, n - 1) if clusters is None else min(clusters, n)
    values, vectors = laplacian_spectrum(affinity, min(limit + 1, n))
    chosen = eigengap(values, limit) if clusters is None else max(1, min(clusters, n))
    if chosen == 1:
        labels = np.zeros(n, int)
    else:
        embedding = vectors[:, :chosen]
        embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
        labels = KMeans(chosen, n_init=10, random_state=seed).fit_predict(embedding)
        labels = _relabel(labels, chosen)
        chosen = int(labels.max()) + 1
    return ClassSpectrum(values, labels, chosen, conductance(affinity, labels, chosen), k, note)


def layout_2d(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, ...) maps -> (n, 2) t-SNE coordinates for a scatter plot (PCA's first two axes for a handful)."""
    x = maps.reshape(len(maps), -1).astype(np.float32)
    n = len(x)
    if n and float(np.abs(x - x[0]).max()) < 1e-9:  # all maps alike (all empty, say): t-SNE's PCA start divides by 0
        return np.zeros((n, 2), np.float32)
    if n < 8:
        centred = x - x.mean(axis=0)
        if n < 2:
            return np.zeros((n, 2), np.float32)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        out = np.zeros((n, 2), np.float32)
        width = min(2, len(s))
        out[:, :width] = u[:, :width] * s[:width]
        return out
    if n > LAYOUT_SAMPLE:
        drawn = np.sort(np.random.default_rng(seed).choice(n, LAYOUT_SAMPLE, replace=False))
        out = np.empty((n, 2), np.float32)
        out[drawn] = layout_2d(x[drawn], seed)
        rest = np.setdiff1d(np.arange(n), drawn)
        _, nearest = NearestNeighbors(n_neighbors=5).fit(x[drawn]).kneighbors(x[rest])
        out[rest] = out[drawn][nearest].mean(axis=1)
        return out
    perplexity = float(min(30.0, (n - 1) / 3))
    return np.asarray(TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x), np.float32)


def _relabel(labels: np.ndarray, clusters: int) -> np.ndarray:
    """Clusters numbered by first appearance, empty ones dropped: the same partition gives the same labels."""
    mapping: dict[int, int] = {}
    for value in labels:
        mapping.setdefault(int(value), len(mapping))
    return np.array([mapping[int(v)] for v in labels], int)
