"""Concepts (issue #23): tiny networks wired by hand so the answer is known (channels that detect red, green and
blue; a head whose class "red" reads the red channel), then the same identities on resnet50 and efficientnet_lite0,
and an uploaded ONNX model answering in its worker."""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.ops.misc import Permute

from cnnvis_engine import ClassTarget, Explainer, LayerError, ModelBundle, TargetError
from cnnvis_engine.concepts.graph import attached, input_maps
from cnnvis_engine.errors import EngineError, MethodError
from cnnvis_engine.images import DecodedImage, decode_image
from cnnvis_engine.models import load_model_file
from cnnvis_engine.models.bundle import Normalization
from cnnvis_engine.models.contained_codec import decode, encode
from tests.conftest import leaves_model_untouched, synthetic_image
from tests.onnx_cases import CLASSES, export, small_cnn

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RED, GREEN, BLUE = 0, 1, 2
RED_BOX, GREEN_BOX = (4, 4, 14, 14), (18, 18, 30, 30)  # x0, y0, x1, y1 (pixels of the 32×32 input)


def rgb_net(channels_last: bool = False) -> nn.Sequential:
    """conv0 (identity) → relu0 → conv1 (channel k fires on colour k: 2·c_k − Σ c − 0.1) → relu1 → pool → fc, with
    class k reading channel k (1), the next colour weakly for it (0.3) and the third against it (−0.3). With
    `channels_last`, relu1's output goes through a channels-last Linear and back first."""
    conv0, conv1, fc = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Linear(3, 3)
    with torch.no_grad():
        conv0.weight.copy_(torch.eye(3)[:, :, None, None])
        conv0.bias.zero_()
        conv1.weight.copy_((2 * torch.eye(3) - 1)[:, :, None, None])
        conv1.bias.fill_(-0.1)
        fc.weight.copy_(torch.tensor([[1.0, 0.3, -0.3], [-0.3, 1.0, 0.3], [0.3, -0.3, 1.0]]))
        fc.bias.fill_(0.5)
    layers: OrderedDict[str, nn.Module] = OrderedDict(conv0=conv0, relu0=nn.ReLU(inplace=True), conv1=conv1)
    layers["relu1"] = nn.ReLU(inplace=True)
    if channels_last:
        mix = nn.Linear(3, 3)  # a pointwise layer on channels-last pixels, as in ConvNeXt's blocks
        with torch.no_grad():
            mix.weight.copy_(torch.eye(3) + 0.1)
            mix.bias.fill_(0.05)
        layers.update(to_last=Permute([0, 2, 3, 1]), mix=mix, to_first=Permute([0, 3, 1, 2]))
    layers.update(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=fc)
    return nn.Sequential(layers).eval()


def rgb_bundle(module: nn.Module | None = None) -> ModelBundle:
    return ModelBundle(
        name="rgb",
        module=module if module is not None else rgb_net(),
        class_names=("red", "green", "blue"),
        input_size=(32, 32),
        normalization=Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        weights_source="random",
    )


@pytest.fixture(scope="module")
def squares() -> DecodedImage:
    """Black 32×32 with a red square (RED_BOX), a green one (GREEN_BOX) and a small blue one."""
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[4:14, 4:14] = (255, 0, 0)
    pixels[18:30, 18:30] = (0, 255, 0)
    pixels[20:26, 4:10] = (0, 0, 255)
    return decode_image(Image.fromarray(pixels))


def by_hand(module: nn.Module, image: DecodedImage, layer: str, target: int) -> tuple[torch.Tensor, ...]:
    """(x, A, ∂y/∂A, ∂y/∂x) for `layer`'s output (N, C, h, w), computed with plain autograd on a copy of the model
    whose ReLUs do not work in place."""
    bundle = rgb_bundle(module)
    x = bundle.normalization.apply(bundle.resize(image.image))[None].requires_grad_(True)
    h = x
    kept: torch.Tensor | None = None
    for name, child in module.named_children():
        h = nn.functional.relu(h) if isinstance(child, nn.ReLU) else child(h)
        if name == layer:
            kept = h
    assert kept is not None
    grad_a, grad_x = torch.autograd.grad(h[0, target], (kept, x))
    return x.detach(), kept.detach(), grad_a, grad_x


# ----- the hand-built network ------------------------------------------------------------------------------------
def test_the_red_channel_carries_red_and_its_map_lies_on_the_red_square(squares: DecodedImage):
    bundle = rgb_bundle()
    with leaves_model_untouched(bundle.module):
        result = Explainer(bundle).concepts(squares, target=RED, top=3)
    assert result.layer == "relu1" and result.kind == "channels" and result.target == RED
    assert result.target_name == "red (class 0)" and result.maps.shape == (3, 32, 32)
    assert result.channels[0] == RED and result.shares[RED] > 0.6
    assert result.negative() == [BLUE] and result.shares[BLUE] == pytest.approx(-1.0)
    assert result.shares[result.contributions > 0].sum() == pytest.approx(1.0)
    red_map = np.abs(result.maps[0])
    assert red_map[4:14, 4:14].sum() / red_map.sum() > 0.99
    blue_map = np.abs(result.maps[list(result.channels).index(BLUE)])
    assert blue_map[20:26, 4:10].sum() / blue_map.sum() > 0.99
    assert result.notes == ()


@pytest.mark.parametrize("layer", ["relu1", "conv1", "relu0"])
def test_contributions_are_gradient_times_activation_and_all_maps_add_up_to_input_times_gradient(squares, layer):
    """conv1's output is overwritten in place by relu1: its values and gradient are recovered, not misread."""
    bundle = rgb_bundle()
    result = Explainer(bundle).concepts(squares, layer=layer, target=GREEN, top=3)
    x, a, grad_a, grad_x = by_hand(rgb_net(), squares, layer, GREEN)
    expected = (a * grad_a).sum(dim=(2, 3))[0].double().numpy()
    assert np.allclose(result.contributions, expected, rtol=1e-6, atol=1e-9)
    everything = (x * grad_x).sum(dim=1)[0].numpy()
    assert np.allclose(result.maps.sum(axis=0), everything, rtol=1e-5, atol=1e-5 * np.abs(everything).max())


def test_at_the_cam_layer_each_contribution_is_the_class_weight_times_the_channel_mean(squares: DecodedImage):
    bundle = rgb_bundle()
    result = Explainer(bundle).concepts(squares, target=BLUE, top=0)
    _, a, _, _ = by_hand(rgb_net(), squares, "relu1", BLUE)
    fc = bundle.module.fc
    assert np.allclose(result.contributions, (fc.weight[BLUE] * a.mean(dim=(2, 3))[0]).detach().numpy(), atol=1e-7)
    assert result.total == pytest.approx(result.score - float(fc.bias[BLUE].detach()), abs=1e-6)
    assert result.maps.shape == (0, 32, 32)


def test_a_channels_last_layer_is_read_as_channels_by_height_by_width(squares: DecodedImage):
    explainer = Explainer(rgb_bundle(rgb_net(channels_last=True)))
    result = explainer.concepts(squares, layer="mix", target=RED, top=3)
    assert result.contributions.shape == (3,) and result.maps.shape == (3, 32, 32)
    x = explainer._cached_pass(squares).x.detach().clone().requires_grad_(True)
    (grad_x,) = torch.autograd.grad(rgb_net(channels_last=True)(x)[0, RED], x)
    everything = (x * grad_x).sum(dim=1)[0].detach().numpy()
    assert result.layer == "mix" and np.abs(everything).max() > 1e-3
    assert np.allclose(result.maps.sum(axis=0), everything, rtol=1e-5, atol=1e-5 * np.abs(everything).max())


def test_a_token_layer_is_read_as_its_patch_grid_without_the_class_token():
    """A two-block ViT whose head averages the patch tokens: every path passes through the last block's patches,
    so all 192 channels' maps add up to input × gradient there; the class token is no place and is left out."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3, depth=2, global_pool="avg"
        ).eval()
    bundle = ModelBundle(
        name="vit", module=vit, class_names=("a", "b", "c"), input_size=(32, 32), weights_source="random"
    )
    explainer = Explainer(bundle)
    image = decode_image(synthetic_image(3, (32, 32)))
    result = explainer.concepts(image, layer="blocks.1", target=1, top=192)
    x = explainer._cached_pass(image).x.detach().clone().requires_grad_(True)
    tokens: list[torch.Tensor] = []
    copy_of = copy.deepcopy(vit)
    handle = copy_of.blocks[1].register_forward_hook(lambda _m, _i, out: tokens.append(out))
    score = copy_of(x)[0, 1]
    grad_a, grad_x = torch.autograd.grad(score, [tokens[0], x])
    handle.remove()
    expected = (tokens[0] * grad_a)[0, 1:].sum(dim=0).double().detach().numpy()  # patch tokens only
    assert np.allclose(result.contributions, expected, rtol=1e-5, atol=1e-8)
    everything = (x * grad_x).sum(dim=1)[0].detach().numpy()
    assert np.allclose(result.maps.sum(axis=0), everything, rtol=1e-5, atol=1e-5 * np.abs(everything).max())


def test_region_concepts_change_with_the_box_and_the_whole_picture_gives_the_whole_ranking(squares):
    explainer = Explainer(rgb_bundle())
    red_box = explainer.concepts(squares, target=RED, region=RED_BOX, top=1)
    green_box = explainer.concepts(squares, target=RED, region=GREEN_BOX, top=1)
    assert red_box.channels[0] == RED and red_box.region == RED_BOX
    assert green_box.channels[0] == GREEN and green_box.contributions[RED] == pytest.approx(0.0, abs=1e-9)
    assert np.abs(green_box.maps[0])[18:30, 18:30].sum() / np.abs(green_box.maps[0]).sum() > 0.99
    whole = explainer.concepts(squares, target=RED, top=1)
    assert np.allclose(
        explainer.concepts(squares, target=RED, region=(0, 0, 32, 32)).contributions, whole.contributions
    )
    halves = [explainer.concepts(squares, target=RED, region=box, top=0) for box in ((0, 0, 13, 32), (13, 0, 32, 32))]
    assert np.allclose(halves[0].contributions + halves[1].contributions, whole.contributions, atol=1e-9)
    with pytest.raises(TargetError, match="leaves nothing"):
        explainer.concepts(squares, region=(40, 40, 50, 50))
    with pytest.raises(TargetError, match="four numbers"):
        explainer.concepts(squares, region=(1, 2, 3))


def test_groups_add_up_to_the_total_and_one_of_them_is_the_red_channel(squares: DecodedImage):
    explainer = Explainer(rgb_bundle())
    result = explainer.concepts(squares, target=RED, groups=3, top=3)
    again = explainer.concepts(squares, target=RED, groups=3, top=3)
    assert result.kind == "groups" and result.loadings is not None and result.loadings.shape == (3, 3)
    assert np.array_equal(result.loadings, again.loadings)  # seeded: the same groups every time
    assert result.total == pytest.approx(explainer.concepts(squares, target=RED).total, rel=1e-6)
    top = result.channels[0]
    assert result.loadings[RED, top] > 0.95 and result.shares[top] > 0.6
    assert np.abs(result.maps[0])[4:14, 4:14].sum() / np.abs(result.maps[0]).sum() > 0.99
    assert "allow 3" in explainer.concepts(squares, groups=6).notes[0]


def test_sub_concepts_follow_the_concept_down_to_the_channel_it_reads(squares: DecodedImage):
    bundle = rgb_bundle()
    explainer = Explainer(bundle)
    with leaves_model_untouched(bundle.module):
        result = explainer.sub_concepts(squares, "relu1", RED, "relu0", target=RED, top=2)
        # conv0 passes the (non-negative) picture on unchanged and relu0 overwrites it in place: the same answer,
        # read where conv0's graph node receives its gradient
        overwritten = explainer.sub_concepts(squares, "relu1", RED, "conv0", target=RED, top=2)
    assert np.allclose(overwritten.contributions, result.contributions, atol=1e-9)
    assert np.allclose(overwritten.maps, result.maps, atol=1e-9)
    assert result.parent == ("relu1", RED) and result.layer == "relu0" and result.maps.shape == (2, 32, 32)
    assert result.channels[0] == RED and result.shares[RED] == pytest.approx(1.0)  # red fires only on red pixels
    _, a0, _, _ = by_hand(rgb_net(), squares, "relu0", RED)
    _, a1, g1, _ = by_hand(rgb_net(), squares, "relu1", RED)
    # relu1's red = ReLU(Σ_j W_j · relu0_j − 0.1): the flow into it is Σ over its active cells of G · W_j · relu0_j
    active = (a1[0, RED] > 0).float()
    weights = torch.tensor([1.0, -1.0, -1.0])
    expected = (g1[0, RED] * active * weights[:, None, None] * a0[0]).sum(dim=(1, 2)).double().numpy()
    assert np.allclose(result.contributions, expected, atol=1e-8)
    with pytest.raises(LayerError, match="does not feed"):
        explainer.sub_concepts(squares, "relu0", RED, "relu1")
    with pytest.raises(LayerError, match="no channel 7"):
        explainer.sub_concepts(squares, "relu1", 7, "relu0")


def test_refusals_are_plain_sentences(squares: DecodedImage):
    bundle = rgb_bundle()
    explainer = Explainer(bundle)
    with leaves_model_untouched(bundle.module), pytest.raises(LayerError, match="not a map"):
        explainer.concepts(squares, layer="fc")
    with pytest.raises(LayerError):
        explainer.concepts(squares, layer="nowhere")
    with pytest.raises(MethodError, match="whole number"):
        explainer.concepts(squares, top=-1)
    with pytest.raises(MethodError, match="whole number"):
        explainer.concepts(squares, groups=0)
    with pytest.raises(MethodError, match="at most 256"):
        explainer.concepts(squares, top=2048)
    with pytest.raises(MethodError, match="from 1 to 64"):
        explainer.concepts(squares, groups=1000)
    with pytest.raises(EngineError, match="does not exist"):
        explainer.concepts(squares, target=9)


# ----- real networks ---------------------------------------------------------------------------------------------
def test_resnet50_maps_add_up_to_input_times_gradient_and_the_cam_layer_to_the_logit(zoo, cat):
    bundle = dataclasses.replace(zoo("resnet50"), input_size=(64, 64), lock=threading.RLock())
    explainer = Explainer(bundle)
    with leaves_model_untouched(bundle.module):
        blocks = explainer.concepts(cat, layer="layer1", target=281, top=256)
        at_cam = explainer.concepts(cat, target=281, top=2)
    x = explainer._cached_pass(cat).x.detach().clone().requires_grad_(True)
    (grad_x,) = torch.autograd.grad(copy.deepcopy(bundle.module)(x)[0, 281], x)
    everything = (x * grad_x).sum(dim=1)[0].detach().numpy()
    assert blocks.maps.shape == (256, 64, 64) and blocks.notes == ()
    assert np.allclose(blocks.maps.sum(axis=0), everything, rtol=1e-5, atol=1e-5 * np.abs(everything).max())
    fc = bundle.module.fc
    mean = explainer._cached_pass(cat).value("layer4").mean(dim=(2, 3))[0]
    assert at_cam.layer == "layer4"
    assert np.allclose(at_cam.contributions, (fc.weight[281] * mean).detach().numpy(), rtol=1e-4, atol=1e-6)
    assert at_cam.total == pytest.approx(at_cam.score - float(fc.bias[281].detach()), rel=1e-4, abs=1e-5)


def test_efficientnet_lite0_cam_layer_contributions_are_the_class_weights_times_the_means(zoo, cat):
    bundle = zoo("efficientnet_lite0")
    explainer = Explainer(bundle)
    result = explainer.concepts(cat, top=2)
    fp = explainer._cached_pass(cat)
    site = fp.trace.cam_site
    assert site is not None and result.layer == site.layer
    weights, biases = fp.cam_weights((ClassTarget(result.target),))
    mean = fp.trace.get(result.layer).layout.view(fp.value(result.layer)).mean(dim=(2, 3))[0]
    assert np.allclose(result.contributions, (weights[0] * mean).numpy(), rtol=1e-4, atol=1e-6)
    assert result.total == pytest.approx(result.score - float(biases[0]), rel=1e-4, abs=1e-5)
    assert result.maps.shape == (2, *bundle.input_size) and "cat" in result.target_name


def test_an_uploaded_onnx_model_answers_concepts_in_its_worker(squares: DecodedImage):
    uploaded = load_model_file(export(small_cnn(), (1, 3, 40, 48)), "net.onnx", labels="\n".join(CLASSES).encode())
    explainer = Explainer(uploaded)
    result = explainer.concepts(squares, target=1, top=2, region=(0, 0, 24, 20))
    assert result.target_name.startswith("square") and result.maps.shape == (2, 40, 48)
    assert result.region == (0.0, 0.0, 24.0, 20.0) and np.isfinite(result.contributions).all()
    lower = next(info.name for info in explainer.layers(squares, "gradcam") if info.name != result.layer)
    assert explainer.sub_concepts(squares, result.layer, int(result.channels[0]), lower, top=1).parent is not None
    assert decode(*encode(result)).channels.tolist() == result.channels.tolist()


def test_batched_and_one_by_one_maps_agree_and_a_backward_that_cannot_be_batched_says_so(squares, monkeypatch):
    explainer = Explainer(rgb_bundle())
    result = explainer.concepts(squares, target=RED, top=3)
    fp = explainer._cached_pass(squares)
    g = fp.gradient((ClassTarget(RED, "red"),), fp.score((ClassTarget(RED, "red"),)), "relu1")
    rows = torch.stack([g * (torch.arange(3) == int(k)).float()[None, :, None, None] for k in result.channels])
    with fp.lock:
        batched, note = input_maps(fp.x, attached(fp, "relu1"), rows, batched=True)
        single, _ = input_maps(fp.x, attached(fp, "relu1"), rows, batched=False)
    assert note == "" and np.allclose(batched.numpy(), result.maps, atol=1e-7)
    assert np.allclose(single.numpy(), result.maps, atol=1e-7)
    plain_grad = torch.autograd.grad

    def no_batching(*args: object, **kwargs: object) -> object:
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented for aten::made_up")
        return plain_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching)
    with fp.lock:
        fallen_back, note = input_maps(fp.x, attached(fp, "relu1"), rows, batched=True)
    assert np.allclose(fallen_back.numpy(), result.maps, atol=1e-7)
    assert "one at a time" in note and "aten::made_up" in note


class Twice(nn.Module):
    """One 1×1 convolution run twice (with a ReLU after each), then the RGB head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 3, 1), rgb_net()
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(torch.relu(self.conv(x)))))


def test_a_layer_that_runs_twice_is_read_at_its_last_run_and_says_so(squares: DecodedImage):
    result = Explainer(rgb_bundle(Twice().eval())).concepts(squares, layer="conv", target=RED, top=1)
    assert result.notes == ("'conv' runs 2 times; its last run is used.",)
    assert result.channels[0] == RED


def test_two_threads_asking_for_concepts_of_one_picture_get_the_same_answer(squares: DecodedImage):
    explainer = Explainer(rgb_bundle())
    answers: list[np.ndarray] = []

    def ask() -> None:
        for _ in range(5):
            answers.append(explainer.concepts(squares, target=GREEN, top=3).maps)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 10 and all(np.array_equal(answer, answers[0]) for answer in answers)


def test_concepts_reuse_the_recorded_pass_and_grad_cams_gradient_without_another_forward(squares: DecodedImage):
    bundle = rgb_bundle()
    explainer = Explainer(bundle)
    explainer.explain(squares, target=RED, layer="relu1", methods=["gradcam"])
    cached = dict(explainer._cached_pass(squares).gradients)
    forwards: list[int] = []
    handle = bundle.module.register_forward_pre_hook(lambda _m, _i: forwards.append(1))
    try:
        result = explainer.concepts(squares, target=RED, layer="relu1", top=2)
    finally:
        handle.remove()
    assert forwards == [] and result.channels[0] == RED
    assert explainer._cached_pass(squares).gradients.keys() == cached.keys()  # Grad-CAM's gradient, no new one
