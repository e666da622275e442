"""The report command on two sample photos with the offline default model: a PNG and an HTML page per picture,
an index table with the prediction and Grad-CAM's faithfulness scores, damaged pictures listed, refusals."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from cnnvis.cli import main
from cnnvis_engine.samples import sample_path


def test_report_writes_pages_and_an_index(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for key in ("cat", "coffee"):
        shutil.copy(sample_path(key), images / f"{key}.jpg")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (images / "notes.txt").write_text("not a picture")
    out = tmp_path / "report"
    code = main(
        [
            "report",
            "--model",
            "efficientnet_lite0",
            "--images",
            str(images),
            "--out",
            str(out),
            "--methods",
            "gradcam,cam,saliency",
            "--device",
            "cpu",
            "--batch-size",
            "2",
            "--steps",
            "4",
        ]
    )
    assert code == 0
    for key in ("cat", "coffee"):
        with Image.open(out / f"{key}.png") as png:
            assert png.size[0] > 600 and png.size[1] > 600
        page = (out / f"{key}.html").read_text(encoding="utf-8")
        assert page.count("data:image/png;base64,") == 4  # the image and three methods
        assert "Grad-CAM faithfulness" in page and "efficientnet_lite0" in page
    rows = list(csv.DictReader((out / "index.csv").open(encoding="utf-8")))
    assert [row["image"] for row in rows] == ["broken.png", "cat.jpg", "coffee.jpg"]
    broken, cat, coffee = rows
    assert broken["error"] and not broken["png"]
    assert "cat" in cat["prediction"].lower() and coffee["prediction"] == "espresso"
    for row in (cat, coffee):
        assert row["layer"] == "bn2" and not row["error"]
        assert 0 <= float(row["deletion_auc"]) <= 1 and 0 <= float(row["insertion_auc"]) <= 1
        assert 0 <= float(row["average_drop"]) <= 1
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="cat.html"' in index and 'href="coffee.png"' in index
    for key in ("cat", "coffee"):  # a thumbnail per picture, shown in the index
        assert f'src="{key}.thumb.jpg"' in index
        with Image.open(out / f"{key}.thumb.jpg") as thumb:
            assert max(thumb.size) == 96
    assert "broken.thumb.jpg" not in index
    assert "Wrote 2 reports" in capsys.readouterr().err


def test_refusals_exit_with_a_sentence(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["report", "--model", "efficientnet_lite0", "--images", str(tmp_path), "--out", out]) == 2
    assert "no pictures" in capsys.readouterr().err
    shutil.copy(sample_path("cat"), tmp_path / "cat.jpg")
    code = main(
        [
            "report",
            "--model",
            "efficientnet_lite0",
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--methods",
            "gradcam,nonsense",
        ]
    )
    assert code == 2 and "Unknown method 'nonsense'" in capsys.readouterr().err
    assert main(["report", "--model", "resnet5", "--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "resnet50" in capsys.readouterr().err  # the close-match hint


def test_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "cnnvis_engine", "report", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "--images" in done.stdout and "--batch-size" in done.stdout


def test_the_commands_share_one_front_end_and_python_m_cnnvis_engine_delegates_to_it(capsys):
    from cnnvis.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert list(commands) == ["serve", "report", "audit", "concepts"]
    for name in ("report", "audit", "concepts"):  # the shared model options on each
        assert "--model" in commands[name].format_help() and "--input-size" in commands[name].format_help()
    done = subprocess.run(
        [sys.executable, "-m", "cnnvis_engine", "audit", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m cnnvis_engine audit")
    assert "--class-of" in done.stdout


def test_the_progress_bar_follows_the_engines_callback(capsys):
    from cnnvis.progress import progress_bar

    with progress_bar(4) as progress:
        progress(2, 4)
        progress(5, 5)  # the total may grow as the work finds more
    err = capsys.readouterr().err
    assert "0/4" in err and err.rstrip().endswith("image/s]") and "5/5" in err  # tqdm redraws at most every 0.1 s
    with pytest.raises(RuntimeError), progress_bar(3) as progress:  # the bar closes when the work raises
        progress(1, 3)
        raise RuntimeError("stop")
    assert "1/3" in capsys.readouterr().err
