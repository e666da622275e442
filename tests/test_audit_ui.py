"""The Audit page's guards: folders only under the audit root (real paths), bounded zip uploads without path
traversal or links, and the selection / export helpers."""

from __future__ import annotations

import csv
import io
import os
import stat
import zipfile

import pytest
from PIL import Image

from cnnvis_engine.audit import AuditError
from cnnvis_ui import audit as a


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
    name = a.unpack_zip(data, tmp_path)
    assert name.startswith("uploads/") and (tmp_path / name / "cats" / "1.png").is_file()
    assert a.unpack_zip(data, tmp_path) == name  # the same upload again: the same folder
    assert name in a.folders(tmp_path)


@pytest.mark.parametrize("member", ["../evil.png", "/abs.png", "a/../../evil.png", "C:/x.png", "a\\..\\evil.png"])
def test_zip_member_names_may_not_climb_out(tmp_path, member):
    with pytest.raises(AuditError, match="points outside"):
        a.unpack_zip(_zip({member: _png()}), tmp_path)
    assert not (tmp_path.parent / "evil.png").exists()


def test_zip_links_crowds_and_bombs_are_refused(tmp_path, monkeypatch):
    with pytest.raises(AuditError, match="link"):
        a.unpack_zip(_zip({"a/1.png": _png()}, link="a/passwd.png"), tmp_path)
    with pytest.raises(AuditError, match="not a zip"):
        a.unpack_zip(b"PK not really", tmp_path)
    monkeypatch.setattr(a, "MAX_ZIP_FILES", 2)
    with pytest.raises(AuditError, match="holds 3 files"):
        a.unpack_zip(_zip({f"a/{i}.png": _png() for i in range(3)}), tmp_path)
    monkeypatch.setattr(a, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(AuditError, match="unpacks to more than"):
        a.unpack_zip(_zip({"a/zeros.png": b"\0" * 5000}), tmp_path)  # deflates to a few bytes
    monkeypatch.setattr(a, "MAX_ZIP_BYTES", 10)
    with pytest.raises(AuditError, match="the limit is"):
        a.unpack_zip(_zip({"a/1.png": _png()}), tmp_path)


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
