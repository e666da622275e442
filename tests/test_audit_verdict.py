"""The audit's verdict, calibrated on planted shortcuts: a mark on 10, 30, 50 and 80 % of a class, of two kinds (a
corner patch, a colour cast over the whole picture), each learned by a small net trained here in seconds, is flagged
at every share; the same tasks without the mark flag nothing. The walk's case (3 classes × 20 pictures, half the
squares marked in the bottom-right corner) is flagged by the engine, the command and the Audit page, with a sentence
that names the corner. The verdict's rules on hand-made maps, too."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cnnvis_engine.audit import audit
from cnnvis_engine.audit.describe import describe, spot_words
from cnnvis_engine.audit.verdict import SUSPICIOUS, weigh
from cnnvis_engine.demos.marked_shapes import shape_set, train_shape_model, write_shape_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
AUDIT_PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "audit.py")
SHARES = (0.1, 0.3, 0.5, 0.8)
TRAIN_SHARE = 0.9  # the nets learn the mark as a shortcut: it sits on 9 of 10 training squares
WALK_CLASSES = ("disc", "square", "triangle")


# ----- planted shortcuts ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nets():
    """One net per mark kind (trained once, on marked squares) and one trained without any mark."""
    marked = {
        kind: train_shape_model(marked_share=TRAIN_SHARE, mark=kind, corner="bottom-right")
        for kind in ("corner", "cast")
    }
    return {**marked, "clean": train_shape_model(marked_share=0.0)}


def planted_audit(model, tmp_path: Path, share: float, mark: str):
    shapes = shape_set(200, 50, marked_share=share, mark=mark, corner="bottom-right", exact=True)
    write_shape_folder(tmp_path, shapes)
    result = audit(model, tmp_path, size=16)
    marked = {i for i, name in enumerate(result.names) if shapes.marked[int(Path(name).stem)]}
    return result, marked


@pytest.mark.parametrize("mark", ["corner", "cast"])
@pytest.mark.parametrize("share", SHARES)
def test_a_planted_shortcut_is_flagged_at_every_share(nets, tmp_path, mark, share):
    result, marked = planted_audit(nets[mark], tmp_path, share, mark)
    assert len(marked) == round(100 * share)
    flagged = [c for c in result.flagged() if c.label == "square"]
    assert flagged, [(c.size, c.evidence.scores) for c in result.for_class("square")]
    got = {m for c in result.flagged() for m in c.members}  # a flagged disc group would count against precision
    assert len(got & marked) / len(marked) >= 0.8  # recall
    assert len(got & marked) / len(got) >= 0.5  # precision
    top = max(flagged, key=lambda c: len(set(c.members) & marked))
    sentence = describe(top, result)
    assert sentence.startswith(f"In {top.size} of the 100 'square' pictures the network")
    if mark == "corner":
        assert "bottom-right corner, not the square" in sentence and "spot" in top.reasons
    else:
        assert "accuracy" in top.reasons or "spread" in top.reasons


@pytest.mark.parametrize("mark", ["corner", "cast"])
def test_without_the_mark_nothing_is_flagged(nets, tmp_path, mark):
    fair, _ = planted_audit(nets["clean"], tmp_path / "fair", 0.0, mark)
    assert not fair.flagged(), [(c.label, c.size, c.evidence.scores) for c in fair.flagged()]
    shortcut, _ = planted_audit(nets[mark], tmp_path / "shortcut", 0.0, mark)  # the marked net, no marks shown
    assert not shortcut.flagged(), [(c.label, c.size, c.evidence.scores) for c in shortcut.flagged()]
    assert max(c.suspicion for c in fair.clusters) < SUSPICIOUS


# ----- the walk's case: 3 classes × 20 pictures, half the squares marked -------------------------------------------
@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """A net that learned the mark (every training square carried it) and the walk's folder: 20 discs, squares and
    triangles, 10 of the squares marked in the bottom-right corner."""
    model = train_shape_model(marked_share=1.0, classes=3, corner="bottom-right")
    shapes = shape_set(60, 8, marked_share=0.5, classes=3, corner="bottom-right", exact=True)
    root = tmp_path_factory.mktemp("audit-root")
    write_shape_folder(root / "walk", shapes)
    return model, root, shapes


def _walk_marked(result, shapes) -> set[int]:
    return {i for i, name in enumerate(result.names) if shapes.marked[int(Path(name).stem)]}


def test_the_walks_case_is_flagged_with_a_sentence_that_names_the_corner(walk):
    model, root, shapes = walk
    result = audit(model, root / "walk", size=16)
    marked = _walk_marked(result, shapes)
    assert len(marked) == 10
    flagged = result.flagged()
    assert [c.label for c in flagged] == ["square"]
    group = flagged[0]
    assert len(set(group.members) & marked) >= 8 and set(group.members) <= marked
    sentence = describe(group, result)
    assert sentence.startswith(f"In {group.size} of the 20 'square' pictures the network looks at the bottom-right")
    assert "not the square; it is right on all" in sentence
    assert group.conductance >= 0.2  # at the old score's cut-off (φ₀ = 0.2) or above: it would have cleared it


def test_the_walks_case_is_flagged_by_the_command(walk, tmp_path, capsys):
    from cnnvis.cli import main
    from cnnvis_engine.models import offer_model, withdraw_model, wrap_module

    model, root, _ = walk
    spec = offer_model(
        wrap_module(
            model.module, name="WalkNet", labels=WALK_CLASSES, input_size=(32, 32), mean=[0.5] * 3, std=[0.5] * 3
        )
    )
    try:
        out = tmp_path / "out"
        code = main(["audit", "--model", spec.name, "--images", str(root / "walk"), "--out", str(out), "--size", "16"])
    finally:
        withdraw_model(spec.name)
    assert code == 0
    err = capsys.readouterr().err
    assert "60 pictures in 3 classes: 1 flagged group" in err
    assert "flagged: In " in err and "looks at the bottom-right corner, not the square" in err
    rows = list(csv.DictReader((out / "clusters.csv").open()))
    flagged = [r for r in rows if r["flagged"] == "True"]
    assert len(flagged) == 1 and flagged[0]["class"] == "square" and "spot" in flagged[0]["reasons"]
    assert float(flagged[0]["conductance"]) > 0  # SpRAy's numbers stay beside the verdict
    clusters = json.loads((out / "clusters.json").read_text())
    assert clusters["classes"]["square"]["clusters"] >= 2 and len(clusters["classes"]["square"]["eigenvalues"]) > 2
    first = clusters["clusters"][0]
    assert (
        first["flagged"] and first["evidence"]["spot_agreement"] >= 0.9 and first["evidence"]["scores"]["spot"] >= 0.4
    )
    page = (out / "report.html").read_text()
    assert "1 flagged group in 3 classes" in page and "bottom-right corner, not the square" in page


@pytest.mark.usefixtures("fresh_caches")
def test_the_walks_case_is_flagged_on_the_page(walk):
    from cnnvis_engine.models import offer_model, withdraw_model, wrap_module
    from cnnvis_engine.models.registry import SERVED_WEIGHTS
    from cnnvis_ui import audit as a
    from cnnvis_ui import state

    model, root, _ = walk
    spec = offer_model(
        wrap_module(
            model.module, name="WalkNet", labels=WALK_CLASSES, input_size=(32, 32), mean=[0.5] * 3, std=[0.5] * 3
        )
    )
    old = os.environ.get("CNNVIS_AUDIT_ROOT")
    os.environ["CNNVIS_AUDIT_ROOT"] = str(root)
    try:
        at = AppTest.from_file(AUDIT_PAGE, default_timeout=240)
        at.session_state[state.MODEL] = spec.name
        at.session_state[state.WEIGHTS] = SERVED_WEIGHTS
        at.session_state[a.FOLDER] = "walk"
        at.session_state[a.SIZE] = 16
        at.run()
        assert not at.exception
        at.button(key="audit-run").click().run()
        assert not at.exception, at.exception
    finally:
        withdraw_model(spec.name)
        if old is None:
            os.environ.pop("CNNVIS_AUDIT_ROOT", None)
        else:
            os.environ["CNNVIS_AUDIT_ROOT"] = old
    assert any(h.value == "60 pictures of walk: 1 flagged group" for h in at.subheader), [h.value for h in at.subheader]
    texts = [m.value for m in at.markdown]
    assert any(t.startswith(":red[**Flagged**]") for t in texts)
    sentence = next(t for t in texts if t.startswith("In ") and "'square' pictures" in t)
    assert "looks at the bottom-right corner, not the square; it is right on all" in sentence
    assert not at.get("download_button")[0].proto.disabled  # the flagged pictures can be exported


# ----- the rules on hand-made maps ------------------------------------------------------------------------------
def _peaked(cells: list[tuple[int, int]], size: int = 16) -> np.ndarray:
    maps = np.full((len(cells), size, size), 0.1, np.float32)
    for m, (r, c) in zip(maps, cells):
        m[r, c] = 10.0
    return maps / maps.sum(axis=(1, 2), keepdims=True)


def _weigh(maps, inside, correct=None, conductance=0.3):
    n = len(maps)
    correct = np.full(n, np.nan) if correct is None else np.asarray(correct, float)
    return weigh(maps, np.asarray(inside), correct, np.full(n, np.nan), np.full(n, np.nan), conductance)


def test_a_spot_shared_by_a_group_is_flagged_whatever_its_share():
    rng = np.random.default_rng(0)
    for group in (5, 10, 18):  # a quarter, half and 90 % of a class of 20
        moving = [tuple(rng.integers(4, 12, 2)) for _ in range(20 - group)]  # objects anywhere in the middle
        maps = _peaked([(14, 14)] * group + moving)
        evidence = _weigh(maps, np.arange(20) < group)
        assert evidence.reasons == ("spot",) and evidence.suspicion == pytest.approx(1.0)
        assert spot_words(evidence.spot, 16) == "the bottom-right corner"
        rest = _weigh(maps, np.arange(20) >= group)
        assert rest.suspicion < SUSPICIOUS  # the moving maps agree on no spot


def test_a_whole_class_is_flagged_for_a_border_spot_not_for_a_central_one():
    assert _weigh(_peaked([(0, 8)] * 12), np.ones(12, bool)).reasons == ("spot",)
    assert spot_words((0, 8), 16) == "the top edge"
    assert not _weigh(_peaked([(8, 8)] * 12), np.ones(12, bool)).reasons  # an object always in the middle


def test_a_sharp_accuracy_gap_flags_the_group_the_model_gets_right():
    rng = np.random.default_rng(1)
    maps = _peaked([tuple(rng.integers(4, 12, 2)) for _ in range(20)])
    inside = np.arange(20) < 8
    correct = inside.astype(float)  # right on the 8, wrong on the 12 others
    assert _weigh(maps, inside, correct, conductance=0.3).reasons == ("accuracy",)
    assert not _weigh(maps, ~inside, correct, conductance=0.3).reasons  # the worse group is the symptom
    alike = _peaked([(8, 8)] * 20)  # maps that blend in (and a graph that links the group to the rest)
    assert not _weigh(alike, inside, correct, conductance=0.9).reasons
    assert not _weigh(maps, inside, np.full(20, 1.0)).reasons  # equally right: nothing


def test_too_small_a_class_gets_no_verdict():
    assert not _weigh(_peaked([(0, 0)] * 3), np.ones(3, bool)).scores
