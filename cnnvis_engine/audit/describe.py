"""Plain sentences about clusters, for people who do not read maps: where the maps sit, why a group is flagged
(`verdict.weigh`'s reasons, in words) and what it means."""

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
    r, c = (int(i) for i in np.unravel_index(np.argmax(thirds), thirds.shape))
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
    """One sentence. A flagged group says why ('In 11 of the 20 'square' pictures the network looks at the
    bottom-right corner, not the square; it is right on all 11 and on none of the other 9.'); any other says where
    its maps sit ('31 of 200 'tank' pictures: the map sits along the top, 40% of it on the tank.')."""
    if cluster.flagged and cluster.evidence is not None:
        return why(cluster, result, object_name)
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


def why(cluster: Cluster, result: Audit, object_name: str | None = None) -> str:
    """The flagged group's reason in one sentence a non-coder reads (see `describe`)."""
    e = cluster.evidence
    assert e is not None
    thing = object_name or cluster.label
    total = len(result.classes[cluster.label].members) if cluster.label in result.classes else cluster.size
    rest = total - cluster.size
    group = (
        f"In all {total} '{cluster.label}' pictures"
        if rest == 0
        else f"In {cluster.size} of the {total} '{cluster.label}' pictures"
    )
    places = [r for r in e.reasons if r != "accuracy"]  # where it looks says more than how often it is right
    reason = places[0] if places else ""
    # the pictures it was compared with: all the others, or (`verdict.kin`) those explained otherwise
    others, those = (
        (f"the other {rest}", f"the other {rest}")
        if e.compared == rest
        else (f"{e.compared} others", f"those {e.compared}")
    )
    if reason == "spot":
        sentence = f"{group} the network looks at {spot_words(e.spot, cluster.mean_map.shape[0])}, not the {thing}"
        if e.mass_inside is not None:
            sentence += f" ({e.mass_inside:.0%} of its map on it)"
    elif reason == "off object":
        sentence = f"{group} the network looks {_looks(where(cluster.mean_map))}, not at the {thing}"
        sentence += f" ({(e.mass_inside or 0):.0%} of its map on it)"
    elif reason == "spread":
        sentence = (
            f"{group} the network looks all over the picture (at something everywhere: a colour, the light), not "
            f"at the {thing}, while in {others} it looks at one place"
        )
    else:
        sentence = f"{group} the network's maps differ from those of {others} (they sit {where(cluster.mean_map)})"
    if e.labelled and e.rest_labelled:
        rest_words = _count(e.rest_right, e.rest_labelled, those if e.rest_labelled == e.compared else None)
        sentence += f"; it is right on {_count(e.right, e.labelled)} and on {rest_words}"
    elif e.labelled:
        sentence += f"; it is right on {_count(e.right, e.labelled)}"
    return sentence + "."


def spot_words(spot: tuple[int, int], size: int) -> str:
    """A map cell (row, column) in words: 'the bottom-right corner', 'the top edge', 'the middle'."""
    row = _ROWS[min(2, spot[0] * 3 // size)]
    column = _COLUMNS[min(2, spot[1] * 3 // size)]
    if row == "middle" and column == "centre":
        return "one spot in the middle"
    if row == "middle":
        return f"the {column} edge"
    if column == "centre":
        return f"the {row} edge"
    return f"the {row}-{column} corner"


REASON_WORDS = {
    "spot": "their maps agree on one spot",
    "off object": "their maps lie off the object",
    "spread": "their maps spread over the whole picture",
    "accuracy": "the model is right far more often on them than on the rest of their class",
}


def verdict(cluster: Cluster) -> str:
    """What the verdict means, in a few words."""
    if cluster.flagged:
        reasons = "; ".join(REASON_WORDS[r] for r in cluster.reasons)
        return (
            f"Flagged: {reasons}. Check what these pictures share — a mark, a background, the weather — that the "
            "model may have learned instead."
        )
    if cluster.size == 0 or cluster.share >= 1:
        return "Not flagged: the whole class looks alike to the model, and its maps point at no shortcut."
    return "Not flagged: nothing in these maps or answers points at a shortcut."


def _looks(place: str) -> str:
    if place.startswith("spread"):
        return "all over the picture"
    if place.startswith("in the") and place.endswith("corner"):
        return "at the" + place[len("in the") :]
    if place.startswith(("in the", "on the", "at the")):
        return "at the" + place[6:]
    return place


def _count(right: int, of: int, others: str | None = "") -> str:
    """'all 11', 'none', '3 of them'; with `others` ('the other 9'): 'all of the other 9', 'none of the other 9',
    '3 of the other 9'; `others` None: of labelled pictures among them ('3 of 7 labelled')."""
    if others == "":
        return f"all {of}" if right == of else "none" if right == 0 else f"{right} of them"
    tail = f" of {others}" if others is not None else f" of {of} labelled"
    return ("all" if right == of else "none" if right == 0 else str(right)) + tail
