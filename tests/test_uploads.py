"""Server-side upload limits (`cnnvis_ui.uploads`): each upload checked against its own widget's limit before use,
the server's cap equal to the largest widget limit, and uploads nothing claims freed by the Reaper (here on a
real MemoryUploadedFileManager with a fake clock; through a running server in test_limits_browser.py)."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import pytest
from PIL import Image
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.uploaded_file_manager import UploadedFileRec
from streamlit.testing.v1 import AppTest

from cnnvis_ui import model_cache, state, uploads
from cnnvis_ui.uploads import GONE_SECONDS, ORPHAN_SECONDS, UNCLAIMED_BYTES, Reaper

pytestmark = pytest.mark.usefixtures("fresh_caches")

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


def test_the_server_cap_is_the_largest_widget_limit():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert (
        config["server"]["maxUploadSize"]
        == uploads.MODEL_MB
        == max(uploads.MODEL_MB, uploads.IMAGE_MB, uploads.LABELS_MB)
    )
    assert config["client"]["showErrorDetails"] == "none"
    from cnnvis_engine.images import MAX_FILE_BYTES

    assert MAX_FILE_BYTES == uploads.IMAGE_MB * MB


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store():
    manager = MemoryUploadedFileManager("/_stcore/upload_file")
    active = {"alive"}
    clock = Clock()
    reaper = Reaper(manager, lambda session: session in active, clock)
    return manager, reaper, clock, active


def put(manager, session: str, file_id: str, size: int) -> None:
    manager.add_file(session_id=session, file=UploadedFileRec(file_id, f"{file_id}.png", "image/png", bytes(size)))


def held(manager) -> dict[str, list[str]]:
    return {session: sorted(files) for session, files in manager.file_storage.items() if files}


def test_unclaimed_uploads_are_dropped_after_a_minute_and_claimed_ones_kept(store):
    manager, reaper, clock, _ = store
    put(manager, "alive", "claimed", 10)
    put(manager, "alive", "orphan", 20)
    assert [r.file_id for r in manager.get_files("alive", ["claimed"])] == ["claimed"]  # a widget's value names it
    clock.now += ORPHAN_SECONDS - 1
    assert reaper.sweep() == (0, 0)
    clock.now += 1
    assert reaper.sweep() == (1, 20)
    assert held(manager) == {"alive": ["claimed"]}
    assert manager.get_stats()  # Streamlit's own byte count stays consistent
    assert manager._total_bytes == 10 and manager._file_count == 1


def test_the_files_of_a_closed_session_are_dropped_soon(store):
    manager, reaper, clock, active = store
    put(manager, "alive", "a", 5)
    manager.get_files("alive", ["a"])
    active.discard("alive")  # the tab was closed: the session waits for a reconnect, its files with it
    reaper.sweep()
    clock.now += GONE_SECONDS / 2
    active.add("alive")  # it came back in time
    reaper.sweep()
    active.discard("alive")
    assert reaper.sweep() == (0, 0)  # first seen gone now (sweeps come every SWEEP_SECONDS)
    clock.now += GONE_SECONDS - 1
    assert reaper.sweep() == (0, 0) and held(manager) == {"alive": ["a"]}
    clock.now += 1
    assert reaper.sweep() == (1, 5) and held(manager) == {}
    assert manager._total_bytes == 0 and manager._file_count == 0


def test_one_session_cannot_pile_up_unclaimed_uploads(store):
    manager, reaper, _, _ = store
    quarter = UNCLAIMED_BYTES // 4 + 1
    for i in range(6):
        put(manager, "alive", f"f{i}", quarter)
    assert held(manager) == {"alive": ["f3", "f4", "f5"]}  # the oldest went first
    assert reaper.freed_files == 3 and reaper.freed_bytes == 3 * quarter
    manager.remove_file(session_id="alive", file_id="f4")  # the browser's DELETE
    manager.remove_session_files("alive")  # Streamlit's own shutdown
    assert held(manager) == {} and not reaper.arrived


def test_refusal_names_the_file_the_size_and_the_limit():
    class Upload:
        name, size = "\u202egnp.exe", 120 * MB

    assert (
        uploads.refusal(Upload, uploads.IMAGE_MB)
        == "gnp.exe was not used: it is 120.0 MB, and the limit here is 50 MB."
    )
    Upload.size = uploads.IMAGE_MB * MB
    assert uploads.refusal(Upload, uploads.IMAGE_MB) == ""


# ----- the app ---------------------------------------------------------------------------------------------------
def dashboard() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()


def uploader(at: AppTest, key: str):
    return next(f for f in at.get("file_uploader") if f.key == key)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_image_over_its_widget_limit_is_refused_with_a_sentence():
    """The browser keeps an image under 50 MB, but the route takes up to 500: a 60 MB "image" sent straight to
    it reaches the app, which must refuse it before decoding."""
    at = dashboard()
    big = png_bytes() + bytes(60 * MB)  # a valid PNG head: without the check it would be decoded and used
    uploader(at, state.IMAGE_UPLOADER).set_value(("huge.png", big, "image/png"))
    at.run()
    assert not at.exception
    assert at.session_state[state.UPLOAD_ERROR] == "huge.png was not used: it is 60.0 MB, and the limit here is 50 MB."
    assert at.session_state[state.IMAGE] == state.DEFAULT_IMAGE
    assert any("60.0 MB" in e.value for e in at.error)


def test_labels_over_their_limit_are_refused_before_the_model_is_loaded(monkeypatch):
    loaded = []
    monkeypatch.setattr(model_cache, "file_explainer", lambda *args: loaded.append(args))
    at = dashboard()
    uploader(at, state.MODEL_FILE).set_value(("m.pt", b"tiny", "application/octet-stream"))
    uploader(at, state.LABELS_FILE).set_value(("labels.txt", b"a\n" * (6 * MB), "text/plain"))
    at.button(key="load-user-model").click().run()
    assert not at.exception and not loaded
    assert (
        at.session_state[state.USER_MODEL_ERROR]
        == "labels.txt was not used: it is 12.0 MB, and the limit here is 10 MB."
    )


def test_a_file_name_with_a_right_to_left_override_is_shown_without_it():
    at = dashboard()
    uploader(at, state.IMAGE_UPLOADER).set_value(("\u202ecat\u2069 \u200f.png", png_bytes(), "image/png"))
    at.run()
    assert not at.exception
    names = [name for name, _ in at.session_state[state.UPLOADS].values()]
    assert names == ["cat .png"]
    assert any(b.label == "cat .png" for b in at.button)


def test_sweepers_free_what_a_session_owned_once_it_has_been_gone_its_grace_time(store):
    _, reaper, clock, active = store
    asked: list[dict[str, bool]] = []
    reaper.sweepers.append(lambda still_there: asked.append({s: still_there(s) for s in ("alive", "closed")}))
    active.add("closed")
    reaper.sweep()
    active.discard("closed")  # the tab closes
    reaper.sweep()
    clock.now += GONE_SECONDS - 1
    reaper.sweep()  # a reload within the grace time keeps its things
    clock.now += 1
    reaper.sweep()
    assert asked == [
        {"alive": True, "closed": True},
        {"alive": True, "closed": True},
        {"alive": True, "closed": True},
        {"alive": True, "closed": False},
    ]
