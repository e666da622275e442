"""The Audit page in links (issue 24): the folder, map, size, class and chosen group are the URL's, so a link opened
in a fresh session runs the same audit and shows the same group; an uploaded zip is named by its own file name."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnvis_engine.demos.tank_scenes import TANK_CLASSES, tank_dataset
from cnnvis_ui import audit as a
from cnnvis_ui import choices, result_cache, state

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "audit.py")


@pytest.fixture
def audit_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An audit root with a 'field' folder: 40 drawn scenes in the detector's own class folders."""
    monkeypatch.setenv("CNNVIS_AUDIT_ROOT", str(tmp_path))
    monkeypatch.setattr(a, "DEMO_COUNT", 4)  # the demo set is drawn on first use; 4 scenes are enough here
    scenes = tank_dataset(40, 31, light="clean")
    for i, (image, label) in enumerate(zip(scenes.images, scenes.labels)):
        folder = tmp_path / "field" / TANK_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    result_cache.clear_all()
    yield tmp_path
    result_cache.clear_all()


def _group_shown(at: AppTest) -> bool:
    try:
        at.get_by_key("audit-group")
    except KeyError:
        return False
    return True


def _shown_group(at: AppTest) -> tuple[str, list[str]]:
    """The chosen group's heading and its pictures' captions, as the page shows them."""
    group = at.get_by_key("audit-group")
    heading = next(m.value for m in group.markdown if "pictures in group" in m.value)
    return heading, [caption for image in group.image for caption in image.captions]


def test_a_link_reopens_the_same_class_and_group(audit_root: Path):
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state[state.MODEL], at.session_state[state.WEIGHTS] = "tanks_shortcut", "demo"
    at.run()
    at.selectbox(key=state.widget(a.FOLDER)).set_value("field").run()
    at.selectbox(key=state.widget(a.SIZE)).set_value(32).run()
    at.button(key="audit-run").click().run()
    assert not at.exception, at.exception
    classes = at.segmented_control(key=state.widget(a.CLASS))
    numbers: list[int] = []
    for label in reversed(classes.options):  # the class shown last first: a link must name the class too
        at.segmented_control(key=state.widget(a.CLASS)).set_value(label).run()
        groups = at.segmented_control(key=state.widget(a.GROUP))
        numbers = [int(n.split()[0]) for n in groups.options if n != "none"]
        if len(numbers) >= 2:  # the biased detector splits a class by the weather
            break
    assert len(numbers) >= 2, groups.options
    other = label
    groups.set_value(numbers[-1]).run()
    assert not at.exception
    heading, captions = _shown_group(at)
    assert f"in group {numbers[-1]} of '{other}'" in heading and captions
    link = {name: str(at.query_params[name]) for name in at.query_params}
    assert link["audit_folder"] == "field" and link["audit_run"] == "1" and link["audit_size"] == "32"
    assert link["audit_class"] == other and link["audit_group"] == str(numbers[-1])

    result_cache.clear_all()  # the link's session computes the audit afresh
    opened = AppTest.from_file(PAGE, default_timeout=180)
    for name, value in link.items():
        opened.query_params[name] = value
    opened.run()
    assert not opened.exception, opened.exception
    assert opened.session_state[state.LINK_NOTICE] == ""
    assert _shown_group(opened) == (heading, captions)
    assert any(":blue[**its pictures are shown**]" in m.value for m in opened.markdown)
    assert opened.session_state[a.FOLDER] == "field" and opened.session_state[a.SIZE] == 32

    # Another folder chosen: the audit shown was of the old one, so it leaves the page and the link.
    opened.selectbox(key=state.widget(a.FOLDER)).set_value(a.DEMO_FOLDER).run()
    assert not _group_shown(opened) and "audit_run" not in opened.query_params
    assert "audit_group" not in opened.query_params


def test_a_link_to_what_is_not_there_falls_back_and_says_so(audit_root: Path):
    """Another session's upload, a group the class does not have: the page opens without them."""
    link = {
        "model": "tanks_shortcut",
        "weights": "demo",
        "image": "sample:cat",
        "audit_folder": "uploads/another-session/zip-0123456789abcdef",
        "audit_run": "1",
        "audit_group": "7",
    }
    at = AppTest.from_file(PAGE, default_timeout=180)
    for name, value in link.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, at.exception
    assert (
        "audit_folder='uploads/another-session/zip-0123456789abcdef' is not offered here"
        in at.session_state[state.LINK_NOTICE]
    )
    assert at.session_state[a.FOLDER] == a.DEMO_FOLDER
    assert not _group_shown(at)  # the demo's classes have no group 7: none is shown
    assert any(h.value.startswith("4 pictures of tank-photos") for h in at.subheader)


def test_an_uploaded_zip_is_named_by_its_own_file_name(audit_root: Path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for label in TANK_CLASSES:
            for i in range(4):
                picture = io.BytesIO()
                Image.new("RGB", (32, 32), (30 * i, 90 if label == "tank" else 200, 40)).save(picture, "PNG")
                archive.writestr(f"{label}/{i}.png", picture.getvalue())
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state[state.MODEL], at.session_state[state.WEIGHTS] = "tanks_shortcut", "demo"
    at.run()
    at.get("file_uploader")[0].set_value(("field trip.zip", buffer.getvalue(), "application/zip"))
    at.run()
    folder = at.session_state[a.FOLDER]
    box = at.selectbox(key=state.widget(a.FOLDER))
    assert folder.startswith("uploads/") and "field trip.zip (your upload)" in box.options
    at.button(key="audit-run").click().run()
    assert not at.exception, at.exception
    titles = [h.value for h in at.subheader]
    assert any(t.startswith("8 pictures of field trip.zip (your upload)") for t in titles), titles
    assert not any("zip-" in t for t in titles)


def test_the_links_audit_methods_are_the_pages():
    assert choices.audit_methods() == a.map_methods()
    assert state.AUDIT_SIZES == a.SIZES and state.DEFAULTS[a.SIZE] in a.SIZES
