"""The audit's verdict on one group of pictures (a SpRAy cluster of one class): flagged when the evidence points at a
shortcut, whatever share of the class the group is (a shortcut may cover every tank photo).

A group is flagged for one or more of these reasons, each judged against the rest of its class R (without the
group's kin: other clusters whose mean maps lie within `KIN` of its own, as SpRAy may split one shortcut in parts):

- "spot": the members' maps agree on one spot that is not the object: at least `SPOT_AGREEMENT` of them peak
  on the group's spot cell (the mean map's peak; within size // 32 cells), and either the spot lies in the
  picture's outer band (the outer quarter: a border or a corner) or at most half as many of R's maps peak there.
  Objects move from picture to picture and their maps' peaks with them; a mark stays put. So a group that is the
  whole class can be flagged for a spot in the outer band. Where regions
  are known, a spot counts only if fewer than half of the members' maps peak on the object (pointing game) and
  the group puts at least `OFF_OBJECT_MARGIN` less of its maps on the object than R does.
- "off object" (boxes or masks known): less than `OFF_OBJECT_MASS` of the members' maps lies on the object, and
  (where R has regions) R's maps put at least `OFF_OBJECT_MARGIN` more on it.
- "spread": the members' maps are spread over the whole picture while R's are focused: their top tenth of
  cells holds at least `SPREAD_DROP` less of the map than R's does (empty maps left out) — the model looks at
  something everywhere (a colour cast, the light), not at one object.
- "accuracy" (labels known): the model is right on a share of the group at least `ACCURACY_GAP` above its share on
  R, and the group's maps are told apart from R's (its mean map differs by a total variation ≥ `MAP_DIFFERENCE`,
  or SpRAy's graph barely links it to R: conductance φ ≤ `SEPARATE`): it does better where it looks elsewhere.

Each reason's raw value v (agreement minus R's agreement; 1 − mass on the object; the accuracy gap) is scaled so
its threshold t lands on `SUSPICIOUS` (0.4): s = 0.4·v/t below t, 0.4 + 0.6·(v − t)/(1 − t) above; a group's
suspicion is its strongest reason's s, flagged at 0.4 or more. The group's size never lowers it. SpRAy's own
numbers (the eigengap's cluster count, each cluster's conductance φ) stay beside it, for ranking and reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUSPICIOUS = 0.4  # a group is flagged at or above; each reason's threshold is scaled to land here
SPOT_AGREEMENT = 0.6  # share of the group whose maps peak on the group's spot cell
SPREAD_DROP = 0.45  # the group's maps hold this much less in their top tenth of cells than the rest's do
OFF_OBJECT_MASS = 0.2  # less than this share of the maps on the object
OFF_OBJECT_MARGIN = 0.15  # and the rest of the class puts at least this much more on it
ACCURACY_GAP = 0.5  # right on a share this much higher than on the rest of the class
MAP_DIFFERENCE = 0.25  # total variation between the group's mean map and the rest's, or
SEPARATE = 0.5  # the group's conductance φ at most this: its maps are told apart from the rest's
KIN = 0.2  # clusters whose mean maps lie this close (total variation) are not each other's contrast
MIN_LABELLED = 3  # pictures with a known label needed on each side to compare accuracy
SPOT_MIN_MEMBERS = 4  # a spot needs at least this many pictures to agree on it
MIN_CLASS = 4  # a class with fewer pictures gets no verdict (as `spectral` keeps it as one group): too few to judge


@dataclass(frozen=True)
class Evidence:
    """What the verdict saw in one group; `reasons` are the ones that passed, strongest first."""

    spot: tuple[int, int]  # (row, column) of the mean map's peak, in map cells
    agreement: float  # share of members whose map peaks within one cell of the spot
    rest_agreement: float | None  # the same share among the rest of the class (None: the group is the class)
    compared: int  # pictures of the rest R it was compared with
    border: bool  # the spot lies in the outer band of the picture
    difference: float | None  # total variation between the group's and the rest's mean maps
    accuracy: float | None  # share right in the group
    rest_accuracy: float | None
    right: int  # members the model got right (labelled ones)
    rest_right: int
    labelled: int  # members with a known label
    rest_labelled: int
    mass_inside: float | None  # mean share of the maps on the object
    rest_mass_inside: float | None
    scores: dict[str, float]  # each reason's scaled score in [0, 1]
    reasons: tuple[str, ...]  # those at or above SUSPICIOUS, strongest first

    @property
    def suspicion(self) -> float:
        return max(self.scores.values(), default=0.0)


def weigh(
    maps: np.ndarray,
    inside: np.ndarray,
    correct: np.ndarray,
    mass: np.ndarray,
    pointing: np.ndarray,
    conductance: float,
    others: np.ndarray | None = None,
) -> Evidence:
    """The evidence on one group: `maps` (n, s, s) of the whole class (each summing to 1), `inside` (n,) bool the
    group's members, `correct` (n,) 1/0/NaN, `mass` (n,) relevance mass on the object and `pointing` (n,) the
    pointing game (NaN without a region), `conductance` the group's φ in the class's neighbour graph. `others`
    (n,) bool: the rest R it is compared with (default: every picture of the class outside the group; `kin`
    leaves out clusters explained like it)."""
    maps = np.asarray(maps, np.float32)
    n, size = len(maps), maps.shape[-1]
    outside = ~inside if others is None else np.asarray(others, bool) & ~inside
    group, rest = maps[inside], maps[outside]
    mean = group.mean(axis=0)
    row, column = (int(v) for v in np.unravel_index(int(np.argmax(mean)), mean.shape))
    spot = (row, column)
    peaks = _peaks(maps)
    near = np.abs(peaks - np.array(spot)).max(axis=1) <= size // 32
    agreement = float(near[inside].mean())
    rest_agreement = float(near[outside].mean()) if len(rest) else None
    band = max(1, size // 4)
    border = min(spot[0], spot[1], size - 1 - spot[0], size - 1 - spot[1]) < band
    difference = float(0.5 * np.abs(mean - rest.mean(axis=0)).sum()) if len(rest) else None
    known, rest_known = correct[inside], correct[outside]
    known, rest_known = known[np.isfinite(known)], rest_known[np.isfinite(rest_known)]
    mass_in, rest_mass = _mean(mass[inside]), _mean(mass[outside])
    scores: dict[str, float] = {}

    hits = _mean(pointing[inside])
    on_object = (hits is not None and hits >= 0.5) or (
        mass_in is not None and (mass_in >= 0.5 if rest_mass is None else rest_mass - mass_in < OFF_OBJECT_MARGIN)
    )
    if inside.sum() >= SPOT_MIN_MEMBERS and not on_object:
        unlike_rest = rest_agreement is not None and rest_agreement <= agreement / 2
        score = _scale(agreement, SPOT_AGREEMENT)
        scores["spot"] = score if border or unlike_rest else min(score, SUSPICIOUS * 0.99)
    concentration = _concentration(maps)
    shown = _shown(maps)
    spread = _mean(np.where(shown, concentration, np.nan)[inside])
    rest_spread = _mean(np.where(shown, concentration, np.nan)[outside])
    if spread is not None and rest_spread is not None and rest_spread > 0 and not on_object:
        scores["spread"] = _scale(max(1.0 - spread / rest_spread, 0.0), SPREAD_DROP)
    if mass_in is not None:
        score = _scale(1.0 - mass_in, 1.0 - OFF_OBJECT_MASS)
        if rest_mass is not None and rest_mass - mass_in < OFF_OBJECT_MARGIN:
            score = min(score, SUSPICIOUS * 0.99)  # the rest of the class looks off the object as much
        scores["off object"] = score
    accuracy = float(known.mean()) if len(known) else None
    rest_accuracy = float(rest_known.mean()) if len(rest_known) else None
    if (
        accuracy is not None
        and rest_accuracy is not None
        and len(known) >= MIN_LABELLED
        and len(rest_known) >= MIN_LABELLED
        and difference is not None
    ):
        apart = difference >= MAP_DIFFERENCE or conductance <= SEPARATE
        score = _scale(max(accuracy - rest_accuracy, 0.0), ACCURACY_GAP)
        scores["accuracy"] = score if apart else min(score, SUSPICIOUS * 0.99)
    if n < MIN_CLASS:
        scores = {}
    reasons = tuple(k for k, v in sorted(scores.items(), key=lambda kv: -kv[1]) if v >= SUSPICIOUS)
    return Evidence(
        spot=spot,
        agreement=agreement,
        rest_agreement=rest_agreement,
        compared=int(outside.sum()),
        border=bool(border),
        difference=difference,
        accuracy=accuracy,
        rest_accuracy=rest_accuracy,
        right=int(known.sum()),
        rest_right=int(rest_known.sum()),
        labelled=len(known),
        rest_labelled=len(rest_known),
        mass_inside=mass_in,
        rest_mass_inside=rest_mass,
        scores={k: round(float(v), 4) for k, v in scores.items()},
        reasons=reasons,
    )


def kin(maps: np.ndarray, labels: np.ndarray, clusters: int) -> list[np.ndarray]:
    """Per cluster, the pictures of the class to compare it with: all outside it but its kin, the clusters whose
    mean map lies within `KIN` (total variation) of its own, both with maps or both mostly empty. SpRAy may split
    one shortcut into several clusters; each is then judged against the pictures explained otherwise."""
    maps = np.asarray(maps, np.float32)
    means = [maps[labels == c].mean(axis=0) for c in range(clusters)]
    empty = [float((~_shown(maps[labels == c])).mean()) >= 0.5 for c in range(clusters)]
    out = []
    for c in range(clusters):
        near = [
            d
            for d in range(clusters)
            if d != c and empty[d] == empty[c] and 0.5 * float(np.abs(means[c] - means[d]).sum()) < KIN
        ]
        out.append(~np.isin(labels, [c, *near]))
    return out


def _scale(value: float, threshold: float) -> float:
    """A raw value in [0, 1] with its threshold at `threshold` -> a score in [0, 1] with that threshold at 0.4."""
    value = float(np.clip(value, 0.0, 1.0))
    if value < threshold:
        return SUSPICIOUS * value / threshold
    return SUSPICIOUS + (1 - SUSPICIOUS) * (value - threshold) / max(1 - threshold, 1e-9)


def _concentration(maps: np.ndarray) -> np.ndarray:
    """(n, s, s) maps -> (n,) share of each map in its top tenth of cells (0.1 for a uniform map)."""
    flat = np.sort(maps.reshape(len(maps), -1), axis=1)[:, ::-1]
    return np.asarray(flat[:, : max(1, flat.shape[1] // 10)].sum(axis=1) / np.maximum(flat.sum(axis=1), 1e-12))


def _shown(maps: np.ndarray) -> np.ndarray:
    """(n,) bool: the map is not empty (flat, the model found nothing of the class)."""
    flat = maps.reshape(len(maps), -1)
    return np.asarray(flat.max(axis=1) - flat.min(axis=1) >= 1e-6)


def _peaks(maps: np.ndarray) -> np.ndarray:
    """(n, s, s) -> (n, 2) (row, column) of each map's maximum; an empty (flat) map peaks nowhere (-99, -99)."""
    flat = maps.reshape(len(maps), -1)
    index = flat.argmax(axis=1)
    out = np.stack(np.unravel_index(index, maps.shape[1:]), axis=1).astype(np.int64)
    out[~_shown(maps)] = -99
    return out


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None
