"""Plain sentences about clusters, for people who do not read maps: where the maps sit and what it means."""

from __future__ import annotations

import numpy as np

from .analysis import Audit, Cluster

_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "centre", "right")


def where(mean_map: np.ndarray) -> str:
    """Where a mean map (H, W) puts its mass, in words: 'in the top-left corner', 'along the top', …"""
    m = np.asarray(mean_map, np.float64)
    total = m.sum()
    if total <= 0:
        return "nowhere in particular"
    h, w = m.shape
    thirds = (
        np.array(
            [
                [m[r * h // 3 : (r + 1) * h // 3, c * w // 3 : (c + 1) * w // 3].sum() for c in range(3)]
                for r in range(3)
            ]
        )
        / total
    )
    r, c = np.unravel_index(np.argmax(thirds), thirds.shape)
    if thirds.max() < 0.2:
        return "spread over the whole picture"
    rows, columns = thirds.sum(axis=1), thirds.sum(axis=0)
    if rows[r] > 0.6 and thirds.max() < 0.45:  # a band across
        return "along the top" if r == 0 else "along the bottom" if r == 2 else "across the middle"
    if columns[c] > 0.6 and thirds.max() < 0.45:
        return "down the left side" if c == 0 else "down the right side" if c == 2 else "down the middle"
    if (r, c) == (1, 1):
        return "in the centre"
    if r == 1:
        return f"on the {_COLUMNS[c]}"
    if c == 1:
        return f"at the {_ROWS[r]}"
    return f"in the {_ROWS[r]}-{_COLUMNS[c]} corner"


def describe(cluster: Cluster, result: Audit, object_name: str | None = None) -> str:
    """One sentence: '31 of 200 'tank' pictures: the map sits along the top, not on the tank (9% on it)'."""
    total = len(result.classes[cluster.label].members) if cluster.label in result.classes else cluster.size
    maps = result.maps[list(cluster.members)].astype(np.float32).reshape(cluster.size, -1)
    empty = float(np.mean(maps.max(axis=1) - maps.min(axis=1) < 1e-5)) if cluster.size else 0.0
    if empty > 0.5:
        sentence = (
            f"{cluster.size} of {total} '{cluster.label}' pictures: the model finds nothing of "
            f"'{cluster.label}' in {'them' if empty == 1 else f'{empty:.0%} of them'} (empty maps)."
        )
        if cluster.accuracy is not None:
            sentence += f" It got {round(cluster.accuracy * cluster.size)} of them right."
        return sentence
    place = where(cluster.mean_map)
    sentence = f"{cluster.size} of {total} '{cluster.label}' pictures: the map sits {place}"
    thing = object_name or cluster.label
    if cluster.mass_inside is not None:
        if cluster.mass_inside < 0.3:
            sentence += f", not on the {thing} ({cluster.mass_inside:.0%} of it there)"
        else:
            sentence += f", {cluster.mass_inside:.0%} of it on the {thing}"
    sentence += "."
    if cluster.accuracy is not None:
        sentence += f" The model got {round(cluster.accuracy * cluster.size)} of them right."
    return sentence


def verdict(cluster: Cluster) -> str:
    """What the suspicion means, in a few words."""
    if cluster.size == 0 or cluster.share >= 1:
        return "The whole class looks alike to the model: nothing stands out."
    if cluster.flagged:
        return (
            "Suspicious: these pictures look alike to the model and unlike the rest of their class. Check "
            "what they share — a mark, a background, the weather — that the model may have learned instead."
        )
    return "Not suspicious: these pictures blend into the rest of their class."
