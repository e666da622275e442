"""The audit engine (SpRAy): a planted shortcut is found and a clean set flags nothing; localisation scores
match Quantus's definitions by hand; bad input gets a clear message; memory stays at size² half floats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnvis_engine.audit import SUSPICIOUS, AuditError, audit, pointing_game, read_image_set, relevance_mass
from cnnvis_engine.audit.localisation import region_mask
from cnnvis_engine.audit.maps import shrink_map
from cnnvis_engine.audit.spectral import analyse_class, eigengap, knn_affinity, laplacian_spectrum
from cnnvis_engine.demos.marked_shapes import SHAPE_CLASSES, shape_set, train_shape_model, write_shape_folder
from cnnvis_engine.hooks import count_hooks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes_model():
    return train_shape_model()


@pytest.fixture(scope="module")
def marked_folder(tmp_path_factory):
    shapes = shape_set(160, 2, marked_share=0.3)
    folder = tmp_path_factory.mktemp("marked")
    write_shape_folder(folder, shapes)
    return folder, shapes


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory):
    shapes = shape_set(160, 2, marked_share=0.0)
    folder = tmp_path_factory.mktemp("plain")
    write_shape_folder(folder, shapes)
    return folder, shapes


@pytest.fixture(scope="module")
def marked_audit(shapes_model, marked_folder):
    return audit(shapes_model, marked_folder[0], size=16)


def _marked_indices(result, shapes) -> set[int]:
    return {i for i, name in enumerate(result.names) if shapes.marked[int(Path(name).stem)]}


def test_planted_shortcut_is_the_top_cluster_of_its_class(marked_audit, marked_folder):
    _, shapes = marked_folder
    marked = _marked_indices(marked_audit, shapes)
    top = marked_audit.for_class("square")[0]
    hits = len(set(top.members) & marked)
    assert hits / top.size >= 0.8  # precision
    assert hits / len(marked) >= 0.8  # recall
    assert top.flagged and top.suspicion >= SUSPICIOUS
    assert marked_audit.clusters[0] is top  # the most suspicious of the whole audit
    assert top.mean_map.shape == (16, 16) and abs(top.mean_map.sum() - 1) < 1e-3
    corner = top.mean_map[:4, :4].sum()  # the mark sits in the top-left corner
    assert corner > 4 * 16 / 256  # far more than a uniform map's share
    assert set(top.prototypes) <= set(top.members)


def test_no_cluster_is_as_suspicious_without_the_mark(shapes_model, plain_folder, marked_audit):
    clean = audit(shapes_model, plain_folder[0], size=16)
    worst = max(c.suspicion for c in clean.clusters)
    assert worst < marked_audit.for_class("square")[0].suspicion
    assert not clean.flagged()


def test_audit_records_every_picture_in_input_order(marked_audit, marked_folder, shapes_model):
    _, shapes = marked_folder
    n = len(shapes.labels)
    assert len(marked_audit.names) == n and marked_audit.read.all()
    assert marked_audit.maps.dtype == np.float16 and marked_audit.maps.shape == (n, 16, 16)  # bounded: size² halfs
    np.testing.assert_allclose(marked_audit.maps.astype(np.float32).sum(axis=(1, 2)), 1, atol=2e-3)
    members = sorted(m for c in marked_audit.clusters for m in c.members)
    assert members == list(range(n))  # every picture in exactly one cluster
    labels = [SHAPE_CLASSES[shapes.labels[int(Path(name).stem)]] for name in marked_audit.names]
    assert list(marked_audit.labels) == labels
    assert np.nanmean(marked_audit.correct) > 0.9
    assert count_hooks(shapes_model.module) == 0
    view = marked_audit.classes["square"]
    assert view.layout.shape == (len(view.members), 2) and len(view.clusters) == len(view.members)


def test_progress_and_fixed_cluster_count(shapes_model, marked_folder):
    seen = []
    result = audit(
        shapes_model,
        marked_folder[0],
        size=8,
        clusters=2,
        batch_size=50,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(50, 160), (100, 160), (150, 160), (160, 160)]
    assert all(len(result.for_class(c)) == 2 for c in SHAPE_CLASSES)


def test_boxes_give_localisation_scores(shapes_model, marked_folder):
    folder, shapes = marked_folder
    image_set = read_image_set(folder)
    boxes = [tuple(shapes.boxes[int(p.stem)]) for p in image_set.paths]
    result = audit(shapes_model, folder, size=16, boxes=boxes)
    assert np.isfinite(result.pointing).all() and np.isfinite(result.mass_inside).all()
    top = result.for_class("square")[0]
    others = [c for c in result.clusters if c.label == "square" and c is not top]
    # the shortcut's maps sit on the mark, outside the shape
    assert top.mass_inside < min(c.mass_inside for c in others)


# ----- localisation: Quantus's definitions, by hand ---------------------------------------------------------
def test_pointing_game_by_hand():
    maps = np.array([[[0, 1], [3, 2]], [[5, 1], [0, 5]], [[1, 1], [1, 1]]], float)
    regions = np.array([[[0, 0], [1, 0]], [[0, 0], [0, 1]], [[0, 0], [0, 0]]], bool)
    # 1: max 3 at (1,0) inside; 2: two maxima, one inside -> hit (Quantus: any); 3: empty region -> NaN
    np.testing.assert_array_equal(pointing_game(maps, regions), [1.0, 1.0, np.nan])
    np.testing.assert_array_equal(pointing_game(maps[:1], ~regions[:1]), [0.0])


def test_relevance_mass_by_hand():
    maps = np.array([[[0, 1], [3, 2]], [[0, 0], [0, 0]]], float)
    regions = np.array([[[0, 1], [1, 0]], [[1, 0], [0, 0]]], bool)
    mass = relevance_mass(maps, regions)
    assert mass[0] == pytest.approx(4 / 6)  # (1 + 3) / (0 + 1 + 3 + 2)
    assert np.isnan(mass[1])  # an all-zero map has no mass to place


def test_region_mask_scales_boxes_and_masks():
    mask = region_mask((0, 0, 50, 100), (100, 100), (4, 4))
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0]] * 4)
    big = np.zeros((8, 8), bool)
    big[4:, 4:] = True
    np.testing.assert_array_equal(region_mask(big, (8, 8), (2, 2)), [[0, 0], [0, 1]])


# ----- spectral pieces ----------------------------------------------------------------------------------------
def test_two_separate_groups_give_two_clusters_by_the_eigengap():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.05, (30, 16)) + np.eye(16)[0]
    b = rng.normal(0, 0.05, (12, 16)) + np.eye(16)[5]
    spectrum = analyse_class(np.concatenate([a, b]), neighbours=5)
    assert spectrum.clusters == 2
    assert len(set(spectrum.labels[:30])) == 1 and len(set(spectrum.labels[30:])) == 1
    assert spectrum.conductance.max() == pytest.approx(0.0)
    values, _ = laplacian_spectrum(knn_affinity(np.concatenate([a, b]), 5), 4)
    assert values[:2] == pytest.approx([0, 0], abs=1e-8) and values[2] > 0.05
    assert eigengap(np.array([0.0, 0.0, 0.5, 0.6]), 3) == 2


def test_shrink_map_sums_to_one():
    small = shrink_map(np.arange(64, dtype=np.float32).reshape(8, 8), 4)
    assert small.shape == (4, 4) and small.sum() == pytest.approx(1)
    assert shrink_map(np.zeros((8, 8)), 2) == pytest.approx(np.full((2, 2), 0.25))


# ----- bad input ------------------------------------------------------------------------------------------------
def test_missing_path(shapes_model, tmp_path):
    with pytest.raises(AuditError, match="no file or folder"):
        audit(shapes_model, tmp_path / "nowhere")


def test_empty_folder(shapes_model, tmp_path):
    with pytest.raises(AuditError, match="no pictures"):
        audit(shapes_model, tmp_path)


def test_non_pictures_are_skipped_and_listed(shapes_model, tmp_path):
    shapes = shape_set(12, 3)
    write_shape_folder(tmp_path, shapes)
    (tmp_path / "disc" / "notes.txt").write_text("not a picture")
    (tmp_path / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = audit(shapes_model, tmp_path, size=8)
    skipped = {s.path: s.reason for s in result.skipped}
    assert "disc/notes.txt" in skipped and "not a picture" in skipped["disc/notes.txt"]
    assert "square/broken.png" in skipped and "damaged" in skipped["square/broken.png"]
    assert result.read.sum() == 12 and len(result.names) == 13  # the broken PNG is listed, not explained
    assert sum(c.size for c in result.clusters) == 12


def test_one_class_only(shapes_model, tmp_path):
    shapes = shape_set(16, 4)
    write_shape_folder(tmp_path, shapes)
    for path in (tmp_path / "disc").iterdir():
        path.unlink()
    (tmp_path / "disc").rmdir()
    result = audit(shapes_model, tmp_path, size=8)
    assert set(result.classes) == {"square"}
    assert any("only one class" in note for note in result.notes)


def test_class_with_fewer_pictures_than_neighbours(shapes_model, tmp_path):
    write_shape_folder(tmp_path, shape_set(7, 5))  # 4 discs, 3 squares; k = 10
    result = audit(shapes_model, tmp_path, size=8)
    notes = " ".join(result.notes)
    assert "'disc': only 4 pictures: the neighbour graph uses 3 neighbours" in notes
    assert "'square': only 3 pictures: too few to cluster" in notes
    assert sum(c.size for c in result.clusters) == 7 and all(c.suspicion == 0 for c in result.for_class("square"))


def test_labels_the_model_does_not_know(shapes_model, tmp_path):
    shapes = shape_set(8, 6)
    paths = write_shape_folder(tmp_path, shapes)
    labels = ["disc", "square", "triangle", "square", "disc", "triangle", "disc", "square"]
    result = audit(shapes_model, paths, labels, size=8)
    assert any("labels the model does not know: 'triangle' (2)" in note for note in result.notes)
    assert "triangle" in result.classes  # grouped under its own label, explained for the prediction
    assert np.isnan(result.correct[2]) and np.isfinite(result.correct[0])


def test_csv_of_paths_and_labels(shapes_model, tmp_path):
    shapes = shape_set(10, 7)
    paths = write_shape_folder(tmp_path / "pics", shapes)
    lines = ["path,label"] + [f"pics/{p.parent.name}/{p.name},{p.parent.name}" for p in paths]
    (tmp_path / "set.csv").write_text("\n".join(lines) + "\nmissing.png,disc\n")
    result = audit(shapes_model, tmp_path / "set.csv", size=8)
    assert result.read.sum() == 10
    assert any(s.reason == "no such file" for s in result.skipped)


def test_wrong_method_and_mismatched_labels(shapes_model, tmp_path):
    paths = write_shape_folder(tmp_path, shape_set(4, 8))
    with pytest.raises(AuditError, match="not one map per picture"):
        audit(shapes_model, paths, method="kernels")
    with pytest.raises(AuditError, match="4 pictures but 2 labels"):
        audit(shapes_model, paths, ["disc", "square"])
    with pytest.raises(AuditError, match="None of the classes"):
        audit(shapes_model, tmp_path, classes=["tank"])


def test_every_picture_unreadable(shapes_model, tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png at all")
    Image.new("RGB", (2, 2)).save(tmp_path / "tiny.png")  # smaller than the engine accepts
    with pytest.raises(AuditError, match="None of the 2 pictures could be read"):
        audit(shapes_model, tmp_path)


# ----- the tanks story's step 4 ---------------------------------------------------------------------------------
def test_tanks_story_audit_flags_the_weather_for_the_biased_detector_only(tmp_path):
    from cnnvis_engine.demos.tank_scenes import tank_dataset
    from cnnvis_engine.models import load_model
    from cnnvis_ui.audit import DEMO_COUNT, DEMO_SEED, demo_folder

    folder = demo_folder(tmp_path)
    scenes = tank_dataset(DEMO_COUNT, DEMO_SEED, light="clean")
    image_set = read_image_set(folder)
    order = [int(p.stem) for p in image_set.paths]
    boxes = [tuple(scenes.boxes[i]) if scenes.boxes[i][0] >= 0 else None for i in order]
    sunny = scenes.sunny[order]
    biased = audit(load_model("tanks_shortcut", "demo"), image_set, boxes=boxes, size=16)
    fair = audit(load_model("tanks_clean", "demo"), image_set, boxes=boxes, size=16)
    flagged = biased.flagged()
    assert flagged
    for cluster in flagged:  # each flagged cluster is one weather: the biased detector split its classes by it
        weather = sunny[list(cluster.members)].mean()
        assert weather > 0.9 or weather < 0.1
    assert not fair.flagged()
    assert max(c.suspicion for c in fair.clusters) < min(c.suspicion for c in flagged)


def test_a_flat_folder_is_grouped_by_prediction(shapes_model, tmp_path):
    shapes = shape_set(20, 11)
    for i, image in enumerate(shapes.images):
        Image.fromarray(image).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    result = audit(shapes_model, tmp_path, size=8)
    assert result.group == "predicted" and np.isnan(result.correct).all()
    assert set(result.classes) <= set(SHAPE_CLASSES)
    for label, view in result.classes.items():
        assert all(result.predicted_name(m) == label for m in view.members)
    assert sum(len(v.members) for v in result.classes.values()) == 20  # the broken file belongs to no class


# ----- links, pipes and swapped files (issue 21) ---------------------------------------------------------------------
LEAVES = "a link that leads outside the folder, so it is not followed"


@pytest.fixture
def opened(monkeypatch):
    """Every path opened from here on, by os.open, io.open or open."""
    import builtins
    import io
    import os

    paths: list[str] = []

    def recorded(real):
        def recording(path, *args, **kwargs):
            if isinstance(path, (str, os.PathLike)):
                paths.append(os.path.realpath(path))
            return real(path, *args, **kwargs)

        return recording

    monkeypatch.setattr(os, "open", recorded(os.open))
    monkeypatch.setattr(io, "open", recorded(io.open))
    monkeypatch.setattr(builtins, "open", recorded(builtins.open))
    return paths


@pytest.fixture
def linked_set(tmp_path):
    """A class-folder set with, inside it, a link to a valid picture outside, a linked subfolder leading out, a class
    folder that is a link out, a link to a picture inside (kept), a link loop and a named pipe."""
    import os

    folder = tmp_path / "set"
    write_shape_folder(folder, shape_set(12, 3))
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    first = min((folder / "disc").iterdir())
    (outside / "secret.png").write_bytes(first.read_bytes())  # a valid picture: it would be read if followed
    (outside / "inner" / "also.png").write_bytes(first.read_bytes())
    os.symlink(outside / "secret.png", folder / "disc" / "zz-secret.png")
    os.symlink(outside / "inner", folder / "square" / "inner")
    os.symlink(outside, folder / "zclass")
    os.symlink(first, folder / "square" / "zz-inside.png")
    os.symlink(folder / "disc", folder / "disc" / "loop")
    os.mkfifo(folder / "disc" / "pipe.png")
    return folder, outside


def test_links_out_of_the_folder_are_skipped_listed_and_never_opened(shapes_model, linked_set, opened):
    folder, outside = linked_set
    opened.clear()
    result = audit(shapes_model, folder, size=8)
    skipped = {s.path: s.reason for s in result.skipped}
    assert skipped["disc/zz-secret.png"] == LEAVES
    assert skipped["square/inner"] == LEAVES
    assert skipped["zclass"] == LEAVES
    assert skipped["disc/loop"] == "a link to a folder already read, so it is not read again"
    assert skipped["disc/pipe.png"] == "not a regular file (a pipe, a device or a socket), so it is not opened"
    assert "square/zz-inside.png" in result.names  # a link that stays inside is read
    assert result.read.sum() == 13 and result.bound == str(folder)
    assert not [p for p in opened if p.startswith(str(outside)) or p.endswith("pipe.png")], opened


def test_a_picture_swapped_for_a_link_after_listing_is_not_opened(shapes_model, tmp_path, opened):
    """The listing checked each file; a file replaced by a link out (or its folder by a link) before the audit
    opens it is refused again at opening."""
    import os

    folder = tmp_path / "set"
    write_shape_folder(folder, shape_set(12, 3))
    outside = tmp_path / "outside"
    outside.mkdir()
    image_set = read_image_set(folder)
    victim = image_set.paths[0]
    (outside / victim.name).write_bytes(victim.read_bytes())
    victim.unlink()
    os.symlink(outside / victim.name, victim)
    square = folder / "square"
    moved = tmp_path / "moved-square"
    square.rename(moved)
    os.symlink(moved, square)  # a whole class folder swapped for a link out
    opened.clear()
    result = audit(shapes_model, image_set, size=8)
    skipped = {s.path: s.reason for s in result.skipped}
    assert skipped[image_set.name(0)].endswith(
        "is a link that leads outside the folder " + str(folder) + ", so it is not read."
    )
    assert all(
        "leads outside" in skipped[image_set.name(i)] for i, p in enumerate(image_set.paths) if p.parent == square
    )
    assert not [p for p in opened if p.startswith((str(outside), str(moved)))], opened


def test_opening_checks_the_file_actually_opened(tmp_path, monkeypatch):
    """If a folder on the way turns into a link between the real-path check and the open (simulated: the check
    is told the path is real as it stands), the kernel's name of the opened file is checked and the file refused."""
    import os

    from cnnvis_engine import ImageError, images

    folder = tmp_path / "set"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (16, 16)).save(outside / "secret.png")
    os.symlink(outside, folder / "swapped")
    os.symlink(outside / "secret.png", folder / "late.png")
    real = os.path.realpath
    monkeypatch.setattr(
        os.path,
        "realpath",
        lambda p, **k: os.fspath(p) if "swapped" in os.fspath(p) or "late" in os.fspath(p) else real(p, **k),
    )
    with pytest.raises(ImageError, match="leads outside the folder"):  # the folder link: caught on the open file
        images.decode_image(folder / "swapped" / "secret.png", inside=folder)
    with pytest.raises(ImageError, match="leads outside the folder"):  # the last link: O_NOFOLLOW refuses it
        images.decode_image(folder / "late.png", inside=folder)
    assert images.decode_image(outside / "secret.png").image.size == (16, 16)  # without `inside`, as before


def test_a_pipe_or_device_is_never_opened(tmp_path, opened):
    import os

    from cnnvis_engine import ImageError, decode_image

    os.mkfifo(tmp_path / "pipe.png")
    for path in (tmp_path / "pipe.png", "/dev/zero"):
        with pytest.raises(ImageError, match="not a regular file"):
            decode_image(path)
    with pytest.raises(ImageError, match="not a regular file"):
        decode_image(tmp_path / "pipe.png", inside=tmp_path)
    assert not opened, opened
