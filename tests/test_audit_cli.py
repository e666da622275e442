"""`python -m cnnvis_engine audit`: maps, clusters and the HTML report from a folder; clear errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cnnvis_engine.audit.report import read_maps
from cnnvis_engine.cli import main
from cnnvis_engine.demos.tank_scenes import TANK_CLASSES, tank_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tank_folder(tmp_path_factory):
    scenes = tank_dataset(24, 77, light="clean")
    folder = tmp_path_factory.mktemp("tanks")
    for i, (image, label) in enumerate(zip(scenes.images, scenes.labels)):
        (folder / TANK_CLASSES[label]).mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / TANK_CLASSES[label] / f"{i:02d}.png")
    (folder / "tank" / "notes.txt").write_text("not a picture")
    return folder


def test_audit_command_writes_maps_clusters_and_report(tank_folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "audit",
            "--model",
            "tanks_shortcut",
            "--images",
            str(tank_folder),
            "--out",
            str(out),
            "--size",
            "8",
            "--batch-size",
            "10",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "24/24" in err or "24/24 images" in err  # the progress bar reached the end
    assert "tank/notes.txt: not a picture" in err
    maps = read_maps(out / "maps.parquet")
    assert maps.shape == (24, 8, 8) and maps.dtype == np.float16
    np.testing.assert_allclose(maps.astype(np.float32).sum(axis=(1, 2)), 1, atol=5e-3)
    clusters = json.loads((out / "clusters.json").read_text())
    assert clusters["model"] == "tanks_shortcut" and clusters["method"] == "gradcam"
    members = sorted(m for c in clusters["clusters"] for m in c["indices"])
    assert members == list(range(24))
    assert {c["class"] for c in clusters["clusters"]} == set(TANK_CLASSES)
    rows = list(csv.DictReader((out / "clusters.csv").open()))
    assert len(rows) == len(clusters["clusters"]) and all(r["sentence"].count("pictures") for r in rows)
    pictures = list(csv.DictReader((out / "pictures.csv").open()))
    assert len(pictures) == 24 and {p["label"] for p in pictures} == set(TANK_CLASSES)
    page = (out / "report.html").read_text()
    assert "<h2>no tank" in page and "<h2>tank" in page and "mean map" in page
    assert page.count("data:image/png;base64,") >= 4  # mean maps and prototypes with overlays
    assert "notes.txt" in page  # the skipped file is listed


def test_audit_command_clear_errors(tmp_path, capsys):
    assert (
        main(
            [
                "audit",
                "--model",
                "tanks_shortcut",
                "--images",
                str(tmp_path / "missing"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert "There is no file or folder at" in capsys.readouterr().err
    assert main(["audit", "--model", "tanks_shortcut", "--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "There are no pictures" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
