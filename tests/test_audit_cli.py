"""`cnnvis audit` (`python -m cnnvis_engine audit`): maps, clusters and the HTML report; clear errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cnnvis.cli import main
from cnnvis_engine.audit.report import read_maps
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


NET_PY = """
from torch import nn


def build():
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2),
    )
"""


def own_model_files(folder):
    """net.py:build, its state_dict w.pt and labels naming the tank folders."""
    import torch

    from cnnvis_engine import load_model

    (folder / "net.py").write_text(NET_PY)
    torch.manual_seed(3)
    net = load_model(f"{folder / 'net.py'}:build").module
    torch.save(net.state_dict(), folder / "w.pt")
    (folder / "labels.txt").write_text("\n".join(TANK_CLASSES))
    return net


def audited_classes(out) -> set[str]:
    return {c["class"] for c in json.loads((out / "clusters.json").read_text())["clusters"]}


def test_audit_takes_your_python_model_with_weights_labels_and_preprocessing(tank_folder, tmp_path, capsys):
    own_model_files(tmp_path)
    out = tmp_path / "out"
    code = main(
        ["audit", "--model", f"{tmp_path / 'net.py'}:build", "--weights", str(tmp_path / "w.pt")]
        + ["--labels", str(tmp_path / "labels.txt"), "--input-size", "64", "64"]
        + ["--mean", "0.5", "--std", "0.25", "--scale", "255"]
        + ["--images", str(tank_folder), "--out", str(out), "--size", "8", "--clusters", "2"]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert audited_classes(out) == set(TANK_CLASSES)  # grouped by the folders, which name the model's classes


def test_audit_takes_an_onnx_model_with_its_labels_and_preprocessing(tank_folder, tmp_path, capsys):
    from tests.onnx_cases import export

    net = own_model_files(tmp_path)
    (tmp_path / "net.onnx").write_bytes(export(net.eval(), (1, 3, 64, 64)))
    out = tmp_path / "out"
    code = main(
        ["audit", "--model", str(tmp_path / "net.onnx"), "--labels", str(tmp_path / "labels.txt")]
        + ["--mean", "0.5", "--std", "0.25"]
        + ["--images", str(tank_folder), "--out", str(out), "--size", "8", "--clusters", "2"]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert audited_classes(out) == set(TANK_CLASSES)


def test_labels_for_a_model_that_brings_its_own_are_refused_with_a_sentence(tank_folder, tmp_path, capsys):
    (tmp_path / "labels.txt").write_text("a\nb\n")
    code = main(
        ["audit", "--model", "tanks_shortcut", "--labels", str(tmp_path / "labels.txt")]
        + ["--images", str(tank_folder), "--out", str(tmp_path / "out")]
    )
    assert code == 2
    assert "tanks_shortcut brings its own class names and preprocessing" in capsys.readouterr().err


def test_folders_named_otherwise_are_mapped_to_classes_and_the_fallback_is_said(tank_folder, tmp_path, capsys):
    own_model_files(tmp_path)
    (tmp_path / "labels.txt").write_text("clear\narmour\n")  # the model's names; the folders say no tank / tank
    model = ["--model", f"{tmp_path / 'net.py'}:build", "--weights", str(tmp_path / "w.pt")]
    model += ["--labels", str(tmp_path / "labels.txt"), "--input-size", "64", "64"]
    common = ["--images", str(tank_folder), "--size", "8", "--clusters", "2"]
    assert main(["audit", *model, *common, "--out", str(tmp_path / "plain")]) == 0
    err = capsys.readouterr().err
    assert "grouped by that prediction, not by its folder" in err and "--class-of FOLDER=CLASS" in err
    mapped = ["--class-of", "no tank=clear", "--class-of", "tank=armour"]
    assert main(["audit", *model, *common, *mapped, "--out", str(tmp_path / "mapped")]) == 0
    err = capsys.readouterr().err
    assert "not by its folder" not in err
    assert audited_classes(tmp_path / "mapped") == {"clear", "armour"}  # each folder under the class it is
    assert main(["audit", *model, *common, "--class-of", "tank=panzer", "--out", str(tmp_path / "x")]) == 2
    assert "The model has no class named 'panzer'" in capsys.readouterr().err
