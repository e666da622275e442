"""The Audit page's guards: folders only under the audit root (real paths), bounded zip uploads without path
traversal or links, and the selection / export helpers."""

from __future__ import annotations

import builtins
import csv
import io
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
from containment_cases import zip_bomb
from PIL import Image

from cnnvis_engine.audit import AuditError
from cnnvis_ui import audit as a
from cnnvis_ui import audit_zip

OWNER = "session-a"  # the browser session a test uploads as


def _png(colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
    return buffer.getvalue()


def _zip(entries: dict[str, bytes], link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_folders_outside_the_root_are_refused(tmp_path):
    root = tmp_path / "root"
    (root / "set" / "a").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", root / "escape")
    assert a.resolve_folder("set", root) == root / "set"
    for text in ("../secret", str(tmp_path / "secret"), "escape", "/etc", "set/../../secret"):
        with pytest.raises(AuditError, match="Only folders under"):
            a.resolve_folder(text, root)
    with pytest.raises(AuditError, match="no folder"):
        a.resolve_folder("missing", root)
    with pytest.raises(AuditError, match="Choose a folder"):
        a.resolve_folder(" ", root)


def test_linked_pictures_inside_a_folder_are_not_read(tmp_path):
    folder = tmp_path / "set"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "ok.png").write_bytes(_png())
    outside = tmp_path / "private.png"
    outside.write_bytes(_png())
    os.symlink(outside, folder / "a" / "link.png")
    found = a.picture_set(folder)
    assert [p.name for p in found.paths] == ["ok.png"]


def test_zip_upload_is_unpacked_under_the_root(tmp_path):
    data = _zip({"cats/1.png": _png(), "dogs/2.png": _png((0, 0, 200))})
    name = audit_zip.unpack_zip(data, tmp_path, owner=OWNER)
    assert name.startswith("uploads/") and (tmp_path / name / "cats" / "1.png").is_file()
    assert audit_zip.unpack_zip(data, tmp_path, owner=OWNER) == name  # the same upload again: the same folder
    assert name in a.folders(tmp_path, owner=OWNER)


@pytest.mark.parametrize("member", ["../evil.png", "/abs.png", "a/../../evil.png", "C:/x.png", "a\\..\\evil.png"])
def test_zip_member_names_may_not_climb_out(tmp_path, member):
    with pytest.raises(AuditError, match="points outside"):
        audit_zip.unpack_zip(_zip({member: _png()}), tmp_path, owner=OWNER)
    assert not (tmp_path.parent / "evil.png").exists()


def test_zip_links_crowds_and_bombs_are_refused(tmp_path, monkeypatch):
    with pytest.raises(AuditError, match="link"):
        audit_zip.unpack_zip(_zip({"a/1.png": _png()}, link="a/passwd.png"), tmp_path, owner=OWNER)
    with pytest.raises(AuditError, match="not a zip"):
        audit_zip.unpack_zip(b"PK not really", tmp_path, owner=OWNER)
    monkeypatch.setattr(audit_zip, "MAX_ZIP_FILES", 2)
    with pytest.raises(AuditError, match="holds 3 files"):
        audit_zip.unpack_zip(_zip({f"a/{i}.png": _png() for i in range(3)}), tmp_path, owner=OWNER)
    monkeypatch.setattr(audit_zip, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(AuditError, match="unpacks to more than"):
        audit_zip.unpack_zip(_zip({"a/zeros.png": b"\0" * 5000}), tmp_path, owner=OWNER)  # deflates to a few bytes
    monkeypatch.setattr(audit_zip, "MAX_ZIP_BYTES", 10)
    with pytest.raises(AuditError, match="the limit is"):
        audit_zip.unpack_zip(_zip({"a/1.png": _png()}), tmp_path, owner=OWNER)


def test_selection_and_export_helpers(tmp_path):
    from cnnvis_engine.audit import audit
    from cnnvis_engine.models import load_model

    folder = a.demo_folder(tmp_path)
    assert len(list(folder.rglob("*.png"))) == a.DEMO_COUNT
    result = audit(load_model("tanks_shortcut", "demo"), a.picture_set(folder), size=8)
    event = {"selection": {"points": [{"customdata": 3}, {"customdata": [5]}, {"customdata": 3}]}}
    assert a.selected_indices(event) == [3, 5] and a.selected_indices(None) == []
    rows = list(csv.DictReader(io.StringIO(a.flagged_csv(result, [3, 5]).decode())))
    assert [r["path"] for r in rows] == [result.names[3], result.names[5]] and rows[0]["sentence"]
    flagged = list(csv.DictReader(io.StringIO(a.flagged_csv(result).decode())))
    assert len(flagged) == sum(c.size for c in result.flagged())
    fig = a.layout_figure(result, "tank")
    shown = sorted(int(i) for trace in fig.data for i in trace.customdata)
    assert shown == sorted(result.classes["tank"].members)
    assert a.picture_png(result, 0).startswith(b"\x89PNG") and a.mean_map_png(result.clusters[0]).startswith(b"\x89PNG")


# ----- every kind of zip member (issue 21) -----------------------------------------------------------------------
def _central(data: bytes, index: int, offset: int, fmt: str, value: int) -> bytes:
    """`data` with one field of its `index`-th central directory record set to `value` (the local header is left
    as written: the checks read the directory only)."""
    out = bytearray(data)
    at = -1
    for _ in range(index + 1):
        at = out.index(b"PK\x01\x02", at + 1)
    struct.pack_into(fmt, out, at + offset, value)
    return bytes(out)


def _with_entry(name: str, data: bytes = b"x", **fields: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ok/1.png", _png())
        info = zipfile.ZipInfo(name)
        for key, value in fields.items():
            setattr(info, key, value)
        archive.writestr(info, data)
    return buffer.getvalue()


def _duplicated(*names: str) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name, and writes it
        for name in names:
            archive.writestr(name, _png())
    return buffer.getvalue()


def _nul_name() -> bytes:
    data = _zip({"ok/1.png": _png(), "ok/2.pngX../../evil.png": _png()})
    return data.replace(b"ok/2.pngX", b"ok/2.png\0")  # zipfile cannot write it; a hand-made zip can


ZIP_CASES = [
    ("empty zip", lambda: _zip({}), "The zip is empty: it holds no files to audit."),
    ("folders only", lambda: _zip({"a/": b"", "a/b/": b""}), "The zip is empty: it holds no files to audit."),
    (
        "a file and a folder of one name",
        lambda: _zip({"a": b"x", "a/x.png": _png()}),
        "The zip holds both a file and a folder named 'a'; one name cannot be both, so it is refused.",
    ),
    (
        "a file, then a folder entry of its name",
        lambda: _zip({"a/x.png": _png(), "b": b"x", "b/": b""}),
        "The zip holds both a file and a folder named 'b'; one name cannot be both, so it is refused.",
    ),
    ("one name twice", lambda: _duplicated("a/1.png", "a/1.png"), "The zip holds 'a/1.png' twice; it is refused."),
    (
        "names that differ only in case",
        lambda: _duplicated("a/1.png", "A/1.png"),
        "The zip holds 'A/1.png' and 'a/1.png', which some file systems take for one name; it is refused.",
    ),
    (
        "one name in two Unicode forms",
        lambda: _duplicated("a/\u00e9.png", "a/e\u0301.png"),
        "which some file systems take for one name; it is refused.",
    ),
    ("a trailing backslash", lambda: _zip({"a\\": b"", "a/1.png": _png()}), "separates folders with backslashes"),
    ("backslashes", lambda: _zip({"cats\\1.png": _png()}), "separates folders with backslashes (a Windows path)"),
    ("a drive letter", lambda: _zip({"c:x.png": _png()}), "points outside its folder"),
    ("a colon", lambda: _zip({"a/b:c.png": _png()}), "holds a colon (a drive or hidden stream on Windows)"),
    ("an empty folder level", lambda: _zip({"a//1.png": _png()}), "holds an empty or '.' folder level"),
    ("a '.' folder level", lambda: _zip({"./a/1.png": _png()}), "holds an empty or '.' folder level"),
    ("a NUL in a name", _nul_name, "The zip's member name 'ok/2.png\\x00../../evil.png' holds control characters"),
    ("a control character", lambda: _zip({"a/x\x07.png": _png()}), "'a/x\\x07.png' holds control characters"),
    ("a 300-byte file name", lambda: _zip({"a/" + "x" * 300 + ".png": _png()}), "is too long (306 characters"),
    ("a 1,300-character path", lambda: _zip({"/".join(["d" * 200] * 6) + ".png": _png()}), "and 1,024 in all"),
    (
        "a folder entry holding data",
        lambda: _with_entry("d/", b"data"),
        "The zip's member 'd/' is a folder entry that holds data; it is refused.",
    ),
    (
        "a named pipe",
        lambda: _with_entry("a/p.png", external_attr=(stat.S_IFIFO | 0o644) << 16),
        "The zip's member 'a/p.png' is a device, pipe or socket, not a file; it is refused.",
    ),
    (
        "an encrypted member",
        lambda: _central(_with_entry("a/2.png", _png()), 1, 8, "<H", 0x1),
        "The zip's member 'a/2.png' is encrypted (password-protected); unpack it and zip it again.",
    ),
    (
        "an unknown compression",
        lambda: _central(_with_entry("a/2.png", _png()), 1, 10, "<H", 99),
        "is compressed in a way this server cannot unpack (method 99); zip it again",
    ),
    (
        "two entries over the same data",
        lambda: _central(_zip({"a/1.png": _png(), "a/2.png": _png()}), 1, 42, "<I", 0),
        "The zip's entries overlap each other (a zip bomb's trick); it is refused.",
    ),
    (
        "a zip64 entry claiming 256 MB",
        lambda: zip_bomb(256 * 2**20),
        "The zip unpacks to more than 200 MB.",
    ),
    (
        "a damaged second member",
        lambda: _central(_zip({"a/1.png": _png(), "a/2.png": _png()}), 1, 16, "<I", 0),
        "The zip's member 'a/2.png' is damaged and cannot be unpacked.",
    ),
]


@pytest.mark.parametrize(("case", "make", "words"), ZIP_CASES, ids=[c[0] for c in ZIP_CASES])
def test_every_kind_of_zip_member_gets_one_sentence_and_leaves_nothing_behind(tmp_path, case, make, words):
    with pytest.raises(AuditError) as info:
        audit_zip.unpack_zip(make(), tmp_path, owner=OWNER)
    message = str(info.value)
    assert words in message and message.endswith(".") and "\n" not in message, message
    assert not any(p.is_file() for p in (tmp_path / "uploads").rglob("*"))  # nothing half-unpacked
    assert not (tmp_path.parent / "evil.png").exists()


def test_a_member_named_like_a_marker_is_just_a_file_and_a_folder_appears_only_complete(tmp_path, monkeypatch):
    """Before, a member `.complete/x.png` raised IsADirectoryError and the same zip then counted as unpacked."""
    data = _zip({".complete/x.png": _png(), "cats/1.png": _png()})
    name = audit_zip.unpack_zip(data, tmp_path, owner=OWNER)
    assert sorted(p.relative_to(tmp_path / name).as_posix() for p in (tmp_path / name).rglob("*.png")) == [
        ".complete/x.png",
        "cats/1.png",
    ]
    # A crash half-way (the disk fills on the second file) leaves no folder, so the next try unpacks again.
    other = _zip({"dogs/1.png": _png(), "dogs/2.png": _png()})
    real_fdopen, calls = os.fdopen, []

    def failing(fd, *args, **kwargs):
        calls.append(fd)
        if len(calls) == 2:
            os.close(fd)
            raise OSError(28, "No space left on device")
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(audit_zip.os, "fdopen", failing)
    with pytest.raises(OSError):
        audit_zip.unpack_zip(other, tmp_path, owner=OWNER)
    monkeypatch.setattr(audit_zip.os, "fdopen", real_fdopen)
    assert sorted(p.name for p in (tmp_path / "uploads" / OWNER).iterdir()) == [name.split("/")[2]]
    again = audit_zip.unpack_zip(other, tmp_path, owner=OWNER)
    assert sorted(p.name for p in (tmp_path / again / "dogs").iterdir()) == ["1.png", "2.png"]


def test_a_zip64_archive_and_other_compressions_unpack(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open("cats/1.png", "w", force_zip64=True) as handle:
            handle.write(_png())
        archive.writestr("cats/2.png", _png(), compress_type=zipfile.ZIP_BZIP2)
        archive.writestr("dogs/1.png", _png(), compress_type=zipfile.ZIP_LZMA)
        archive.writestr("dogs/", b"")
    name = audit_zip.unpack_zip(buffer.getvalue(), tmp_path, owner=OWNER)
    assert sorted(p.relative_to(tmp_path / name).as_posix() for p in (tmp_path / name).rglob("*.png")) == [
        "cats/1.png",
        "cats/2.png",
        "dogs/1.png",
    ]


def test_hidden_and_outward_linked_folders_are_not_offered(tmp_path):
    root = tmp_path / "root"
    (root / "uploads" / ".partial-abc" / "a").mkdir(parents=True)
    (root / "mine" / "a").mkdir(parents=True)
    (tmp_path / "elsewhere" / "a").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", root / "linked-out")
    os.symlink(tmp_path / "elsewhere", root / "uploads" / "zip-linked")
    os.symlink(root / "mine", root / "linked-in")
    offered = a.folders(root)
    assert "mine" in offered and "linked-in" in offered
    assert not any("partial" in f or "linked-out" in f or "zip-linked" in f for f in offered), offered


def test_the_page_reads_no_picture_through_a_link_leading_out(tmp_path, monkeypatch):
    """A folder under the root with a link to a valid picture outside it, and a linked subfolder: neither is read
    (every open is recorded), both are listed as skipped, and a drawn overlay of the outside path is refused."""
    monkeypatch.setenv("CNNVIS_AUDIT_ROOT", str(tmp_path / "root"))
    root = a.audit_root()
    folder = root / "set"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(6):
            (folder / cls / f"{i}.png").write_bytes(_png((40 * i, 200 if cls == "a" else 20, 90)))
    secret = tmp_path / "secret"
    (secret / "inner").mkdir(parents=True)
    (secret / "private.png").write_bytes(_png())
    (secret / "inner" / "also.png").write_bytes(_png())
    os.symlink(secret / "private.png", folder / "a" / "zz-link.png")
    os.symlink(secret / "inner", folder / "b" / "linked")
    os.symlink(secret, folder / "c")  # a class folder that is a link out
    opened: list[str] = []

    def recorded(real):
        def recording(path, *args, **kwargs):
            if isinstance(path, (str, os.PathLike)):
                opened.append(os.fspath(path))
            return real(path, *args, **kwargs)

        return recording

    monkeypatch.setattr(os, "open", recorded(os.open))
    monkeypatch.setattr(io, "open", recorded(io.open))
    monkeypatch.setattr(builtins, "open", recorded(builtins.open))
    found = a.picture_set(a.resolve_folder("set"))
    assert sorted(p.relative_to(folder).as_posix() for p in found.paths) == [
        f"{c}/{i}.png" for c in "ab" for i in range(6)
    ]
    skipped = {s.path: s.reason for s in found.skipped}
    assert skipped == {
        "a/zz-link.png": "a link that leads outside the folder, so it is not followed",
        "b/linked": "a link that leads outside the folder, so it is not followed",
        "c": "a link that leads outside the folder, so it is not followed",
    }
    from cnnvis_engine.audit import audit
    from cnnvis_engine.models import load_model

    result = audit(load_model("tanks_shortcut", "demo"), found, size=8)
    assert result.read.all() and result.bound == str(folder)
    assert not [p for p in opened if str(secret) in os.path.realpath(p)], opened
    assert a.signature(folder) == a.signature(folder)
    a.overlay_png.clear()
    drawn = a.overlay_png(str(folder / "a" / "zz-link.png"), 0.0, result.maps[0].tobytes(), 8, inside=str(folder))
    assert drawn.startswith(b"\x89PNG")  # the map alone: the picture behind the link is not opened
    assert not [p for p in opened if str(secret) in os.path.realpath(p)], opened


def test_the_page_answers_a_bad_zip_with_its_sentence_and_a_good_one_with_its_folder(tmp_path, monkeypatch):
    """AppTest of pages/audit.py: the uploader's callback shows the refusal in place, nothing lands on disk, and a
    good zip becomes the chosen folder."""
    from streamlit.testing.v1 import AppTest

    from cnnvis_ui import result_cache

    monkeypatch.setenv("CNNVIS_AUDIT_ROOT", str(tmp_path))
    monkeypatch.setattr(a, "DEMO_COUNT", 4)  # the demo set is drawn on first use; 4 scenes are enough here
    result_cache.clear_all()
    page = str(Path(__file__).resolve().parent.parent / "pages" / "audit.py")
    at = AppTest.from_file(page, default_timeout=60).run()
    upload = next(f for f in at.get("file_uploader") if f.key == a.ZIP)
    upload.set_value(("both.zip", _zip({"a": b"x", "a/x.png": _png()}), "application/zip"))
    at.run()
    assert [e.value for e in at.error] == [
        "The zip holds both a file and a folder named 'a'; one name cannot be both, so it is refused."
    ]
    assert not at.exception and not (tmp_path / "uploads").exists()  # refused before anything was written
    upload = next(f for f in at.get("file_uploader") if f.key == a.ZIP)
    upload.set_value(("good.zip", _zip({"cats/1.png": _png(), "dogs/1.png": _png((0, 0, 200))}), "application/zip"))
    at.run()
    assert not at.error and not at.exception
    chosen = at.session_state[a.FOLDER]
    assert chosen.startswith("uploads/test session id/zip-") and (tmp_path / chosen / "dogs" / "1.png").is_file()
    result_cache.clear_all()


def test_a_zip_is_private_to_the_session_that_uploaded_it_and_freed_when_it_has_gone(tmp_path):
    data = _zip({"cats/1.png": _png(), "dogs/2.png": _png((0, 0, 200))})
    mine = audit_zip.unpack_zip(data, tmp_path, owner="session-a")
    theirs = audit_zip.unpack_zip(data, tmp_path, owner="session-b")  # the same zip from another session: its own copy
    assert mine != theirs
    assert mine in a.folders(tmp_path, owner="session-a") and theirs not in a.folders(tmp_path, owner="session-a")
    assert not any(f.startswith("uploads/") for f in a.folders(tmp_path))  # no session: no uploads at all
    assert a.resolve_folder(mine, tmp_path, owner="session-a") == (tmp_path / mine).resolve()
    for owner in ("session-b", None):  # typed or linked, another session's upload is refused
        with pytest.raises(AuditError, match="another browser session"):
            a.resolve_folder(mine, tmp_path, owner=owner)
    with pytest.raises(AuditError, match="does not belong to a browser session"):
        audit_zip.unpack_zip(data, tmp_path, owner="../x")
    from cnnvis_ui.audit_folders import remove_uploads_of_gone_sessions

    assert remove_uploads_of_gone_sessions(lambda session: session == "session-a", tmp_path) == ["session-b"]
    assert (tmp_path / mine).is_dir() and not (tmp_path / theirs).exists()


def test_the_page_lets_a_person_say_which_class_each_folder_is(tmp_path, monkeypatch):
    """Folders named otherwise than the model's classes: the page offers a class per folder; unmapped, the note
    says the pictures were grouped by prediction; mapped, the audit's classes are the model's."""
    from streamlit.testing.v1 import AppTest

    from cnnvis_ui import result_cache, state

    monkeypatch.setenv("CNNVIS_AUDIT_ROOT", str(tmp_path))
    monkeypatch.setattr(a, "DEMO_COUNT", 4)
    for name, colour in (("calm", (90, 140, 200)), ("armour", (70, 80, 40))):
        (tmp_path / "field" / name).mkdir(parents=True)
        for i in range(6):
            (tmp_path / "field" / name / f"{i}.png").write_bytes(_png(tuple(c + 9 * i for c in colour)))
    result_cache.clear_all()
    page = str(Path(__file__).resolve().parent.parent / "pages" / "audit.py")
    at = AppTest.from_file(page, default_timeout=120)
    at.session_state[state.MODEL], at.session_state[state.WEIGHTS] = "tanks_shortcut", "demo"
    at.session_state[a.FOLDER] = "field"
    at.run()
    assert not at.exception
    boxes = {box.label: box for box in at.selectbox if box.label.startswith("Folder '")}
    assert set(boxes) == {"Folder 'armour'", "Folder 'calm'"}
    at.button(key="audit-run").click().run()
    notes = " ".join(info.value for info in at.info)
    assert "grouped by that prediction, not by its folder" in notes, notes
    boxes = {box.label: box for box in at.selectbox if box.label.startswith("Folder '")}  # this run's widgets
    boxes["Folder 'armour'"].set_value("tank")
    boxes["Folder 'calm'"].set_value("no tank")
    at.run()
    at.button(key="audit-run").click().run()
    assert not at.exception
    notes = " ".join(info.value for info in at.info)
    assert "not by its folder" not in notes and "labels the model does not know" not in notes, notes
    assert "12 pictures of field" in " ".join(h.value for h in at.subheader)
    result_cache.clear_all()
