"""The demo models retell the article's stories — checked on freshly generated held-out scenes (seeds 9000+,
never used in training or in the model cards), and their segmentation and regression Grad-CAM checked against
pytorch-grad-cam and captum on the same target definitions."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import leaves_model_untouched
from PIL import Image

from cnnvis_engine import Explainer, RegressionTarget, SegmentationTarget, list_models, load_model
from cnnvis_engine.demos.catalog import DEMOS
from cnnvis_engine.demos.floor_views import ROBOT_OUTPUT_NAMES, output_index
from cnnvis_engine.demos.recipes import train_demo
from cnnvis_engine.demos.seismic_sections import draw_salt_section
from cnnvis_engine.demos.tank_scenes import tank_dataset
from cnnvis_engine.models import ModelBundle
from cnnvis_engine.stories import evaluation

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("tanks_shortcut", "tanks_clean", "salt_unet", "robot_perception")


@pytest.fixture(scope="module")
def demos() -> dict[str, ModelBundle]:
    return {name: load_model(name) for name in NAMES}


# ----- registry and files ------------------------------------------------------------------------------------
def test_demos_are_registered_with_their_shipped_weights(demos: dict[str, ModelBundle]) -> None:
    specs = {spec.name: spec for spec in list_models()}
    tasks = {
        "tanks_shortcut": "classification",
        "tanks_clean": "classification",
        "salt_unet": "segmentation",
        "robot_perception": "regression",
    }
    for name, bundle in demos.items():
        assert specs[name].weights == ("demo",) and specs[name].default_weights == "demo"
        assert specs[name].task == bundle.task == tasks[name]
        assert bundle.weights_source == "demo" and not bundle.module.training
        assert DEMOS[name].weights_file.stat().st_size <= 2_000_000
        card = DEMOS[name].card_file.read_text()
        assert "Held-out results" in card and f"--only {name}" in card
    assert demos["robot_perception"].output_names == ROBOT_OUTPUT_NAMES and len(ROBOT_OUTPUT_NAMES) == 25
    assert demos["salt_unet"].class_names == ("sediment", "salt")
    assert demos["tanks_clean"].class_names == ("no tank", "tank")


def test_story_pictures_are_shipped() -> None:
    import json

    index = json.loads((ROOT / "assets" / "stories" / "stories.json").read_text())
    assert {entry["story"] for entry in index} == {"tanks", "salt", "robot"}
    for entry in index:
        assert (ROOT / "assets" / "stories" / entry["file"]).is_file()
    keys = {entry["key"] for entry in index}
    assert {"tank_cloudy", "robot_floor_coloured", "robot_shadow"} <= keys


def test_scenes_are_the_same_for_the_same_seed_and_differ_only_in_weather() -> None:
    a, b = tank_dataset(6, 9100, light="clean"), tank_dataset(6, 9100, light="clean")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.boxes, b.boxes)
    sunny, cloudy = tank_dataset(4, 9101, light="shortcut"), tank_dataset(4, 9101, light="reversed")
    assert np.array_equal(sunny.boxes, cloudy.boxes) and sunny.sunny.tolist() == [False, True, False, True]
    assert cloudy.sunny.tolist() == [True, False, True, False]
    section = draw_salt_section(np.random.default_rng(1))
    assert section.mask.shape == section.image.shape[:2] and set(np.unique(section.mask)) <= {0, 1}


def test_training_is_seeded_and_repeatable() -> None:
    first, _ = train_demo("tanks_clean", steps=2)
    second, _ = train_demo("tanks_clean", steps=2)
    for (key, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), key


def test_training_script_runs_a_few_steps(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("train_demos", ROOT / "scripts" / "train_demos.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--only", "tanks_clean", "--steps", "3", "--out", str(tmp_path)]) == 0
    state = torch.load(tmp_path / "tanks_clean.pt", weights_only=True)
    DEMOS["tanks_clean"].make_module().load_state_dict(state, strict=True)
    assert "3 steps" in (tmp_path / "tanks_clean.md").read_text()
    assert (tmp_path / "stories" / "robot_shadow.png").is_file()


# ----- the stories, on fresh data ----------------------------------------------------------------------------
def test_shortcut_net_collapses_when_the_weather_changes(demos: dict[str, ModelBundle]) -> None:
    shortcut, clean = demos["tanks_shortcut"].module, demos["tanks_clean"].module
    assert evaluation.tank_accuracy(shortcut, "shortcut", count=200, seed=9001) >= 0.95  # its own kind of photos
    assert evaluation.tank_accuracy(shortcut, "clean", count=200, seed=9002) <= 0.65  # light and tanks independent
    assert evaluation.tank_accuracy(clean, "clean", count=200, seed=9002) >= 0.90
    assert evaluation.tank_accuracy(clean, "reversed", count=200, seed=9003) >= 0.90


def test_clean_net_looks_at_the_tank_and_the_shortcut_net_does_not(demos: dict[str, ModelBundle]) -> None:
    data = tank_dataset(60, 9004, light="clean")
    clean = evaluation.tank_cam_share(demos["tanks_clean"], data=data)
    shortcut = evaluation.tank_cam_share(demos["tanks_shortcut"], data=data)
    assert clean.count == shortcut.count == 30
    assert clean.mean >= 2 * shortcut.mean, (clean, shortcut)
    assert clean.mean > 0.3


def test_salt_unet_segments_salt_and_its_gradcam_sits_on_the_mask(demos: dict[str, ModelBundle]) -> None:
    assert evaluation.salt_iou(demos["salt_unet"].module, count=100, seed=9005) >= 0.8
    share = evaluation.salt_cam_share(demos["salt_unet"], count=16, seed=9006)
    assert share.mean > 0.5 and share.flat == 0, share


def test_robot_net_finds_obstacles_but_not_floor_coloured_ones(demos: dict[str, ModelBundle]) -> None:
    scores = evaluation.robot_scores(demos["robot_perception"].module, count=200, seed=9007)
    assert scores["per_output_accuracy"] >= 0.90
    assert scores["per_output_accuracy"] > scores["all_zero_baseline"] and scores["recall"] >= 0.8, scores
    failures = evaluation.robot_failures(demos["robot_perception"].module, count=60, seed=9008)
    assert failures["found_floor_coloured"] < failures["found_ordinary"] - 0.4, failures
    assert failures["false_obstacles_per_shadow_view"] > failures["false_obstacles_per_empty_view"] + 0.2, failures


# ----- peer agreement ----------------------------------------------------------------------------------------
def _peer_score(bundle: ModelBundle, target):
    """captum's forward_func: the model's output turned into our target's score, (N,)."""
    return lambda x: target.score(bundle.module(x))


def _captum_raw(bundle: ModelBundle, layer: str, target, x: torch.Tensor) -> np.ndarray:
    from captum.attr import LayerGradCam

    module = bundle.module.get_submodule(layer)
    attribution = LayerGradCam(_peer_score(bundle, target), module).attribute(x, relu_attributions=True)
    return attribution.detach()[0, 0].numpy()


def _pgc_map(bundle: ModelBundle, layer: str, target_fn, x: torch.Tensor) -> np.ndarray:
    from pytorch_grad_cam import GradCAM

    model = copy.deepcopy(bundle.module)  # pytorch-grad-cam calls loss.backward(): keep the shared model clean
    with GradCAM(model=model, target_layers=[model.get_submodule(layer)]) as cam:
        return cam(input_tensor=x, targets=[target_fn])[0]


def _assert_close(ours: np.ndarray, theirs: np.ndarray, tolerance: float = 1e-4) -> None:
    scale = max(float(np.abs(theirs).max()), 1e-12)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() / scale < tolerance


@pytest.mark.parametrize("layer", ["decode1", "bottom", "down2"])
def test_segmentation_gradcam_matches_pytorch_grad_cam_and_captum(demos: dict[str, ModelBundle], layer: str) -> None:
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    bundle = demos["salt_unet"]
    image = Image.fromarray(draw_salt_section(np.random.default_rng([9009, 0])).image)
    x = bundle.prepare(image)[1][None]
    ours_target = SegmentationTarget(1, name="salt")
    with leaves_model_untouched(bundle.module):
        ours = Explainer(bundle).explain(image, layer=layer, target=ours_target, methods=["gradcam"])["gradcam"]
    with torch.no_grad():
        predicted = bundle.module(x).argmax(dim=1)[0]
    mask = (predicted == 1).float().numpy()  # pytorch-grad-cam's tutorial mask: pixels predicted as the class
    assert mask.sum() > 0
    assert ours.raw.max() > 0
    _assert_close(ours.map, _pgc_map(bundle, layer, SemanticSegmentationTarget(1, mask), x))
    _assert_close(ours.raw, _captum_raw(bundle, layer, ours_target, x))


def test_segmentation_target_in_a_box_matches_captum(demos: dict[str, ModelBundle]) -> None:
    bundle = demos["salt_unet"]
    image = Image.fromarray(draw_salt_section(np.random.default_rng([9010, 0])).image)
    x = bundle.prepare(image)[1][None]
    target = SegmentationTarget(0, box=(0, 0, 32, 40), name="sediment")
    ours = Explainer(bundle).explain(image, layer="decode2", target=target, methods=["gradcam"])["gradcam"]
    _assert_close(ours.raw, _captum_raw(bundle, "decode2", target, x))


@pytest.mark.parametrize("outputs", [None, tuple(output_index(d, 4) for d in range(5)), (output_index(4, 1),)])
@pytest.mark.parametrize("layer", ["features.2", "features.1"])
def test_regression_gradcam_matches_pytorch_grad_cam_and_captum(
    demos: dict[str, ModelBundle], outputs, layer: str
) -> None:
    bundle = demos["robot_perception"]
    image = Image.open(ROOT / "assets" / "stories" / "robot_obstacles.png")
    x = bundle.prepare(image)[1][None]
    target = RegressionTarget(outputs)
    with leaves_model_untouched(bundle.module):
        ours = Explainer(bundle).explain(image, layer=layer, target=target, methods=["gradcam"])["gradcam"]
    chosen = list(range(len(ROBOT_OUTPUT_NAMES))) if outputs is None else list(outputs)
    assert ours.raw.max() > 0
    _assert_close(ours.map, _pgc_map(bundle, layer, lambda out: out[chosen].sum(), x))
    _assert_close(ours.raw, _captum_raw(bundle, layer, target, x))


def test_regression_gradcam_at_the_last_block_is_empty_for_every_peer_too(demos: dict[str, ModelBundle]) -> None:
    """The dense head weighs each position differently, so every channel's mean gradient is negative and
    ReLU(Σ w_k A_k) is zero: the Stories page takes the robot's Grad-CAM one block earlier, and says why."""
    bundle = demos["robot_perception"]
    image = Image.open(ROOT / "assets" / "stories" / "robot_obstacles.png")
    x = bundle.prepare(image)[1][None]
    ours = Explainer(bundle).explain(image, layer="features", target=RegressionTarget(), methods=["gradcam"])["gradcam"]
    assert ours.meta["flat"] and not ours.raw.any()
    assert not _captum_raw(bundle, "features", RegressionTarget(), x).any()
    assert not _pgc_map(bundle, "features", lambda out: out.sum(), x).any()
