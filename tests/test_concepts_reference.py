"""The reference index (cnnvis_engine.concepts.reference_index) on a hand-built net whose channel 0 is wired to
detect red and channel 1 green: its top pictures are the pictures with red in them, the box holds the red spot,
the Parquet file reopens to the same index without running the model, and Ray gives the same tops."""

from __future__ import annotations

import dataclasses
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import leaves_model_untouched
from PIL import Image
from torch import nn

from cnnvis_engine.concepts import ConceptsError, ReceptiveField, ReferenceSetError, reference_index
from cnnvis_engine.errors import LayerError
from cnnvis_engine.models.bundle import ModelBundle, Normalization

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 16
SPOT = 3
CLASSES = ("red", "green", "neither")


class ColourNet(nn.Module):
    """detect (1×1: red = R − G − B − ½, green = G − R − B − ½) → ReLU → smooth (5×5 box filter per channel) →
    ReLU → mean → fc: the "red" logit is channel 0's mean, "green" channel 1's, "neither" a small constant."""

    def __init__(self) -> None:
        super().__init__()
        self.forwards = 0
        self.body = nn.Sequential(
            OrderedDict(
                detect=nn.Conv2d(3, 2, 1),
                relu1=nn.ReLU(inplace=True),
                smooth=nn.Conv2d(2, 2, 5, padding=2, bias=False),
                relu2=nn.ReLU(),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(2, 3),
            )
        )
        with torch.no_grad():
            self.body.detect.weight.copy_(torch.tensor([[1.0, -1, -1], [-1, 1, -1]]).view(2, 3, 1, 1))
            self.body.detect.bias.fill_(-0.5)
            self.body.smooth.weight.zero_()
            self.body.smooth.weight[0, 0] = 1 / 25
            self.body.smooth.weight[1, 1] = 1 / 25
            self.body.fc.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [0, 0]]))
            self.body.fc.bias.copy_(torch.tensor([0.0, 0, 1e-3]))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return self.body(x)


def colour_bundle() -> ModelBundle:
    return ModelBundle(
        name="colournet",
        module=ColourNet(),
        class_names=CLASSES,
        input_size=(SIZE, SIZE),
        normalization=Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        weights_source="random",
    )


# (colour, top-left corner of the spot) per picture; None: plain grey.
PICTURES = [
    ("red", (2, 3)),
    (None, None),
    ("green", (5, 5)),
    ("red", (10, 12)),
    ("green", (0, 0)),
    (None, None),
    ("red", (13, 0)),  # at the bottom border
    ("green", (8, 9)),
]
RED = {i for i, (c, _) in enumerate(PICTURES) if c == "red"}


def picture(colour: str | None, corner: tuple[int, int] | None) -> Image.Image:
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    if colour is not None and corner is not None:
        row, col = corner
        rgb[row : row + SPOT, col : col + SPOT] = (230, 10, 10) if colour == "red" else (10, 230, 10)
    return Image.fromarray(rgb)


def write_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (colour, corner) in enumerate(PICTURES):
        picture(colour, corner).save(folder / f"p{i}_{colour or 'grey'}.png")
    return folder


def test_top_pictures_of_the_red_channel_are_the_red_ones_and_boxes_hold_the_spot(tmp_path):
    bundle = colour_bundle()
    pictures = [picture(c, p) for c, p in PICTURES]
    with leaves_model_untouched(bundle.module):
        index = reference_index(
            bundle, pictures, ["body.smooth", "body.relu1"], top=3, batch_size=3, cache_dir=tmp_path
        )
    assert not index.from_cache and index.forward_passes == 3
    for by in ("activation", "contribution"):
        tops = index.top("body.smooth", 0, by=by)
        assert {t.image for t in tops} == RED
        assert all(t.score > 0 for t in tops)
        for t in tops:
            row, col = PICTURES[t.image][1]
            left, top, right, bottom = t.box
            assert left <= col and top <= row and right >= min(col + SPOT, SIZE) and bottom >= min(row + SPOT, SIZE)
            assert right - left <= 5 and bottom - top <= 5  # the 5×5 receptive field, clipped at the border
    assert index.layers["body.smooth"].receptive.box[2] - index.layers["body.smooth"].receptive.box[0] == 5
    assert index.layers["body.relu1"].receptive.box[2] - index.layers["body.relu1"].receptive.box[0] == 1  # a 1×1 conv
    green = {t.image for t in index.top("body.smooth", 1, by="activation")}
    assert green == {i for i, (c, _) in enumerate(PICTURES) if c == "green"}
    assert [int(p) for p in index.predicted] == [CLASSES.index(c or "neither") for c, _ in PICTURES]
    assert index.classes("body.smooth", 0) == [(0, 3)]  # the red channel serves "red"
    assert index.channels_by_contribution("body.smooth", 1) in ([0], [1])
    # The contribution is gradient × activation: for "red" pictures, channel 0's mean after relu2 (fc weight 1).
    x = torch.from_numpy(np.stack([np.asarray(pictures[i], np.float32) / 255 for i in sorted(RED)])).permute(0, 3, 1, 2)
    with torch.no_grad():
        smooth = bundle.module.body.smooth(bundle.module.body.relu1(bundle.module.body.detect(x)))
    expected = sorted(smooth[:, 0].clamp(min=0).mean(dim=(1, 2)).tolist(), reverse=True)
    assert [t.score for t in index.top("body.smooth", 0, by="contribution")] == pytest.approx(expected, rel=1e-5)


def test_boxes_move_with_the_unit_and_keep_the_edges_a_field_was_cut_at():
    inside = ReceptiveField((4, 4), (16, 16), (2, 2), (6, 6, 11, 11))
    assert inside.around(2 * 4 + 2) == (6, 6, 11, 11)
    assert inside.around(0) == (0, 0, 3, 3)  # moved up and left by 8 pixels, clipped
    assert inside.around(3 * 4 + 3) == (10, 10, 15, 15)
    cut = ReceptiveField((4, 4), (16, 16), (2, 2), (0, 6, 9, 11))  # reaches the left edge: the field goes on
    assert cut.around(2 * 4 + 3) == (0, 6, 13, 11)
    whole = ReceptiveField((14, 14), (224, 224), (7, 7), (0, 0, 224, 224))
    assert whole.around(0) == whole.around(195) == (0, 0, 224, 224)


def test_a_block_and_a_layer_inside_it_are_indexed_in_one_pass(tmp_path):
    # "features" starts before "features.smooth" but ends after it: the graph must start at the output ready first.
    body = ColourNet().body
    features = nn.Sequential(OrderedDict((n, getattr(body, n)) for n in ("detect", "relu1", "smooth", "relu2")))
    module = nn.Sequential(OrderedDict(features=features, pool=body.pool, flatten=body.flatten, fc=body.fc))
    bundle = dataclasses.replace(colour_bundle(), module=module)
    pictures = [picture(c, p) for c, p in PICTURES]
    index = reference_index(bundle, pictures, ["features", "features.smooth"], top=3, batch_size=8, cache_dir=tmp_path)
    for layer in ("features", "features.smooth"):
        tops = index.top(layer, 0, by="contribution")
        assert {t.image for t in tops} == RED and min(t.score for t in tops) > 0


def test_reopening_reads_the_parquet_file_and_runs_no_forward_pass(tmp_path):
    bundle = colour_bundle()
    folder = write_folder(tmp_path / "refs")
    first = reference_index(bundle, folder, "body.smooth", top=4, batch_size=4, cache_dir=tmp_path / "cache")
    stored = list((tmp_path / "cache" / "concepts").glob("*.parquet"))
    assert len(stored) == 1 and stored[0].stem == first.fingerprint
    forwards = bundle.module.forwards
    again = reference_index(bundle, folder, "body.smooth", top=4, batch_size=4, cache_dir=tmp_path / "cache")
    assert bundle.module.forwards == forwards  # no forward at all: not the trace, not the receptive field
    assert again.from_cache and again.names == first.names == tuple(
        f"p{i}_{c or 'grey'}.png" for i, (c, _) in enumerate(PICTURES)
    )
    for channel in range(2):
        for by in ("activation", "contribution"):
            assert again.top("body.smooth", channel, by) == first.top("body.smooth", channel, by)
    np.testing.assert_array_equal(again.predicted, first.predicted)
    np.testing.assert_allclose(again.layers["body.smooth"].total, first.layers["body.smooth"].total)
    assert again.layers["body.smooth"].receptive == first.layers["body.smooth"].receptive
    # A changed picture, layer list or model is another index.
    picture("red", (0, 0)).save(folder / "p1_grey.png")
    changed = reference_index(bundle, folder, "body.smooth", top=4, batch_size=4, cache_dir=tmp_path / "cache")
    assert not changed.from_cache and changed.fingerprint != first.fingerprint
    with torch.no_grad():
        bundle.module.body.fc.bias[2] += 1
    assert not reference_index(bundle, folder, "body.smooth", top=4, cache_dir=tmp_path / "cache").from_cache


def test_a_zip_is_read_member_by_member_and_unsafe_members_are_skipped(tmp_path):
    bundle = colour_bundle()
    folder = write_folder(tmp_path / "refs")
    archive = tmp_path / "refs.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in sorted(folder.iterdir()):
            zipped.write(file, f"set/{file.name}")
        zipped.writestr("../escape.png", (folder / "p0_red.png").read_bytes())
        zipped.writestr("notes.txt", "not a picture")
        zipped.writestr("set/broken.png", b"\x89PNG\r\n\x1a\n broken")
    index = reference_index(bundle, archive, "body.smooth", top=3, cache_dir=tmp_path)
    assert {index.names[t.image] for t in index.top("body.smooth", 0)} == {f"set/p{i}_red.png" for i in RED}
    reasons = {s.path: s.reason for s in index.skipped}
    assert set(reasons) == {"../escape.png", "notes.txt", "set/broken.png"}
    assert "outside the zip" in reasons["../escape.png"]


def test_refusals_are_sentences(tmp_path):
    bundle = colour_bundle()
    pictures = [picture(c, p) for c, p in PICTURES[:2]]
    with pytest.raises(LayerError, match="not channels over a picture"), leaves_model_untouched(bundle.module):
        reference_index(bundle, pictures, "body.flatten", cache_dir=tmp_path)
    with pytest.raises(LayerError, match="no layer called"):
        reference_index(bundle, pictures, "nowhere", cache_dir=tmp_path)
    with pytest.raises(ConceptsError, match="at least one layer"):
        reference_index(bundle, pictures, [], cache_dir=tmp_path)
    with pytest.raises(ReferenceSetError, match="no pictures"):
        reference_index(bundle, tmp_path, "body.smooth", cache_dir=tmp_path / "cache")
    with pytest.raises(ReferenceSetError, match="not a zip"):
        (tmp_path / "bad.zip").write_bytes(b"no zip")
        reference_index(bundle, tmp_path / "bad.zip", "body.smooth", cache_dir=tmp_path / "cache")


def test_the_sample_photos_are_a_reference_set(tmp_path):
    bundle = colour_bundle()
    index = reference_index(bundle, "samples", "body.smooth", top=2, cache_dir=tmp_path)
    assert index.names == ("cat", "coffee", "astronaut", "rocket")
    assert len(index.top("body.smooth", 0)) == 2


@pytest.mark.usefixtures("ray_local")
def test_ray_engine_gives_the_same_tops_as_the_local_one(tmp_path):
    # The workers unpickle the model, so it is made of torch's own modules (ColourNet lives in this test file).
    bundle = dataclasses.replace(colour_bundle(), module=ColourNet().body)
    folder = write_folder(tmp_path / "refs")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    layers = ["smooth", "relu1"]
    local = reference_index(bundle, folder, layers, top=3, batch_size=3, cache_dir=tmp_path / "a")
    distributed = reference_index(
        bundle, folder, layers, top=3, batch_size=3, engine="ray", workers=2, cache_dir=tmp_path / "b"
    )
    assert distributed.fingerprint == local.fingerprint and not distributed.from_cache
    np.testing.assert_array_equal(distributed.predicted, local.predicted)
    for layer in layers:
        for channel in range(2):
            for by in ("activation", "contribution"):
                assert distributed.top(layer, channel, by) == local.top(layer, channel, by)
        np.testing.assert_allclose(distributed.layers[layer].total, local.layers[layer].total, rtol=1e-6)
    assert [(s.path, s.reason) for s in distributed.skipped] == [(s.path, s.reason) for s in local.skipped]
    assert [s.path for s in local.skipped] == ["broken.png"]
    assert {distributed.names[t.image] for t in distributed.top("smooth", 0)} == {f"p{i}_red.png" for i in RED}
    assert distributed.predicted[distributed.names.index("broken.png")] == -1


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")  # scripts/test.sh installs requirements-ray.txt, so CI runs this
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


NET = """
import torch
from torch import nn


def build():
    body = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 5, padding=2, bias=False), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        body[0].weight.copy_(torch.tensor([[1.0, -1, -1], [-1, 1, -1]]).view(2, 3, 1, 1))
        body[0].bias.fill_(-0.5)
        body[2].weight.zero_()
        body[2].weight[0, 0] = 1 / 25
        body[2].weight[1, 1] = 1 / 25
        body[6].weight.copy_(torch.tensor([[1.0, 0], [0, 1], [0, 0]]))
        body[6].bias.copy_(torch.tensor([0.0, 0, 1e-3]))
    return body
"""


def test_cli_writes_an_atlas_with_crops_and_escaped_names(tmp_path, monkeypatch, capsys):
    from cnnvis.cli import main

    monkeypatch.setenv("CNNVIS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "net.py").write_text(NET)
    (tmp_path / "labels.txt").write_text("<script>alert(1)</script>\ngreen\nneither\n")
    folder = write_folder(tmp_path / "refs")
    picture("red", (4, 4)).save(folder / "<img src=x onerror=alert(2)>.png")
    args = ["concepts", "--model", f"{tmp_path / 'net.py'}:build", "--labels", str(tmp_path / "labels.txt")]
    args += ["--input-size", "16", "16", "--mean", "0", "0", "0", "--std", "1", "1", "1", "--images", str(folder)]
    args += ["--layers", "2", "--top", "3", "--channels", "1", "--crops", "2", "--vis-steps", "2", "--out"]
    assert main([*args, str(tmp_path / "atlas")]) == 0
    page = (tmp_path / "atlas" / "atlas.html").read_text()
    assert "<b>&lt;script&gt;alert(1)&lt;/script&gt;</b> ×3" in page  # the red channel serves "red", named as text
    assert "<script>" not in page and "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;.png" in page
    assert "1 of 2 channels shown" in page and "--channels" in page
    assert "2 · channel 0" in page and "5×5 pixels" in page
    crops = sorted((tmp_path / "atlas" / "crops").glob("*.png"))
    assert [c.name for c in crops] == ["l0_c0_0.png", "l0_c0_1.png"]
    assert Image.open(crops[0]).size == (64, 64)
    red = np.asarray(Image.open(crops[0]).convert("RGB"), np.int32)
    assert (red[..., 0] - red[..., 1] > 100).any()  # the crop holds the red spot
    assert (tmp_path / "atlas" / "vis" / "l0_c0.png").is_file()
    assert "Indexed 9 pictures" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "again")]) == 0  # the stored index and the cached visualisation
    assert "Opened the stored index" in capsys.readouterr().err
    assert (tmp_path / "again" / "atlas.html").read_text() == page
