"""Your own network: a Python file's factory (`load_model("net.py:build", weights=...)`), a module path, any
torchvision or timm classifier by prefixed name, and the sentences bad input gets.

The custom CNN below is not a registered architecture; it is written to `tmp_path` as a user would write it.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from conftest import leaves_model_untouched, synthetic_image
from torch import nn

from cnnvis_engine import METHODS, Explainer, ModelError, ModelFileError
from cnnvis_engine.methods import layers_for
from cnnvis_engine.models import find_spec, list_models, load_model, offer_model, withdraw_model, wrap_module, zoo_names
from cnnvis_engine.models.zoo import looks_like_cnn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NET = textwrap.dedent('''
    import torch
    from torch import nn


    class ToyNet(nn.Module):
        """Not a registered architecture: two stages of convolutions, a pool and a linear head."""

        def __init__(self, classes: int = 4) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.stage = nn.Sequential(
                nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.head = nn.Linear(16, classes)

        def forward(self, x):
            return self.head(self.flatten(self.pool(self.stage(self.stem(x)))))


    def build():
        torch.manual_seed(3)
        return ToyNet()


    def broken():
        raise ValueError("no config for this size")


    def not_a_model():
        return {"weights": 1}


    def one_output():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))


    instance = build()
''')
CONV_LAYERS = ("stem.0", "stage.0", "stage.2")
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)  # CIFAR-10's, for a 32×32 model


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "toy_net.py"
    path.write_text(NET)
    return path


@pytest.fixture
def weights_file(tmp_path, net_file):
    """A state_dict of ToyNet with seed-5 weights and BatchNorm statistics that are not the defaults."""
    bundle = load_model(f"{net_file}:build", input_size=(32, 32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in bundle.module.state_dict().items()}
    state["stem.1.running_var"] = state["stem.1.running_var"].abs() + 0.5
    path = tmp_path / "toy.pt"
    torch.save(state, path)
    return path, state


def test_factory_file_loads_weights_labels_and_its_own_preprocessing(net_file, weights_file, tmp_path):
    path, state = weights_file
    labels = tmp_path / "labels.txt"
    labels.write_text("plane\ncar\nbird\ncat\n")
    bundle = load_model(f"{net_file}:build", weights=path, labels=labels, input_size=(32, 32), mean=MEAN, std=STD)
    assert bundle.name == "toy_net.py:build"
    assert bundle.class_names == ("plane", "car", "bird", "cat")
    assert not bundle.module.training
    assert torch.equal(bundle.module.state_dict()["stem.0.weight"], state["stem.0.weight"])
    # the 32×32 model with its own mean/std gets inputs of that size and normalisation
    display, x = bundle.prepare(synthetic_image(1, (90, 70)))
    assert display.shape == (32, 32, 3) and tuple(x.shape) == (3, 32, 32)
    rgb = torch.from_numpy(np.array(display)).permute(2, 0, 1).float()
    expected = (rgb / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5)
    seen = []
    handle = bundle.module.stem.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    try:
        Explainer(bundle).predict(synthetic_image(2, (100, 60)))
    finally:
        handle.remove()
    assert seen == [torch.Size([1, 3, 32, 32])]


def test_gradcam_at_an_inner_layer_equals_captum(net_file, weights_file):
    path, _ = weights_file
    bundle = load_model(f"{net_file}:build", weights=path, input_size=(32, 32), mean=MEAN, std=STD)
    image = synthetic_image(4, (32, 32))
    with leaves_model_untouched(bundle.module):
        ours = Explainer(bundle).explain(image, layer="stage.0", methods=["gradcam"])
    _, x = bundle.prepare(image)
    target = ours.target.index
    peer = load_model(f"{net_file}:build", weights=path, input_size=(32, 32)).module
    captum = LayerGradCam(peer, peer.get_submodule("stage.0")).attribute(
        x[None].clone(), target=target, relu_attributions=True
    )
    captum = captum.detach()[0, 0].numpy()
    assert ours["gradcam"].layer == "stage.0"
    assert captum.shape == ours["gradcam"].raw.shape == (16, 16)
    assert float(captum.max()) > 0
    assert np.abs(ours["gradcam"].raw - captum).max() <= 1e-4


def test_every_method_runs_and_every_conv_layer_is_listed(net_file, weights_file):
    path, _ = weights_file
    bundle = load_model(f"{net_file}:build", weights=path, input_size=(32, 32), mean=MEAN, std=STD)
    explainer = Explainer(bundle)
    image = synthetic_image(5, (40, 40))
    trace = explainer.trace(image)
    assert tuple(layer.name for layer in layers_for(trace, "kernels")) == CONV_LAYERS
    assert set(CONV_LAYERS) <= {layer.name for layer in layers_for(trace, "gradcam")}
    options = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 3}, "smoothgrad_cam": {"samples": 3}}
    with leaves_model_untouched(bundle.module):
        result = explainer.explain(image, methods=list(METHODS), options=options)
    for method in METHODS:
        if "attention" in METHODS[method].needs:  # a CNN: the attention methods say why not (tests/test_rollout.py)
            assert result[method].reason.startswith("This model has no attention layers"), method
            continue
        assert result[method].applicable, (method, result[method].reason)
        assert result[method].map is not None and np.isfinite(result[method].map).all(), method


def test_attribute_may_be_a_class_or_an_instance_and_a_module_path(net_file, monkeypatch):
    assert load_model(f"{net_file}:ToyNet").name == "toy_net.py:ToyNet"
    assert load_model(f"{net_file}:instance").module.head.out_features == 4
    monkeypatch.syspath_prepend(str(net_file.parent))
    try:
        bundle = load_model("toy_net:build", input_size=(16, 16))
        assert bundle.name == "toy_net:build" and bundle.input_size == (16, 16)
    finally:
        sys.modules.pop("toy_net", None)


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("broken", "toy_net.py:broken() raised ValueError: no config for this size."),
        ("not_a_model", "toy_net.py:not_a_model() returned a dict, not a torch.nn.Module."),
        ("one_output", "The model has a single output"),
        ("nothing", "toy_net.py has no attribute 'nothing'. It defines: ToyNet, broken, build, instance"),
    ],
)
def test_bad_attributes_get_a_sentence(net_file, attr, message):
    with pytest.raises(ModelFileError) as error:
        load_model(f"{net_file}:{attr}")
    assert str(error.value).startswith(message)


def test_missing_files_and_wrong_weights_get_a_sentence(net_file, tmp_path):
    with pytest.raises(ModelFileError, match=r"^There is no file .*missing\.py\.$"):
        load_model(f"{tmp_path}/missing.py:build")
    with pytest.raises(ModelFileError, match=r"^There is no weights file .*nope\.pt\.$"):
        load_model(f"{net_file}:build", weights=tmp_path / "nope.pt")
    other = nn.Sequential(nn.Conv2d(3, 5, 3))
    torch.save({"stem.0.weight": other[0].weight, "stem.0.bias": other[0].bias}, tmp_path / "wrong.pt")
    wrong = r"^The weights do not fit toy_net.py:build: stem.0.weight is \(5, 3, 3, 3\)"
    with pytest.raises(ModelFileError, match=wrong):
        load_model(f"{net_file}:build", weights=tmp_path / "wrong.pt")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(ModelFileError, match="The labels name 2 classes, but the model has 4 outputs."):
        load_model(f"{net_file}:build", labels=tmp_path / "labels.txt")
    (tmp_path / "syntax.py").write_text("def build(:\n")
    with pytest.raises(ModelFileError, match=r"^Importing syntax.py failed: SyntaxError"):
        load_model(f"{tmp_path}/syntax.py:build")
    with pytest.raises(ModelFileError, match="There is no Python module 'no_such_package.net'"):
        load_model("no_such_package.net:build")
    with pytest.raises(ModelFileError, match="The model failed on a 224×224 RGB image"):
        wrap_module(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)))


def test_wrap_module_for_in_memory_models():
    bundle = wrap_module(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)),
        name="Mine",
        labels=["a", "b", "c"],
        input_size=(24, 20),
        mean=(0.5,),
        std=(0.5,),
        scale=255,
    )
    assert bundle.input_size == (24, 20) and bundle.normalization.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ModelFileError, match="not a torch.nn.Module"):
        wrap_module("model")  # type: ignore[arg-type]
    with pytest.raises(ModelFileError, match="input size must be two whole numbers"):
        wrap_module(bundle.module, input_size=(0, 3))


def test_offered_models_are_listed_first_and_can_be_withdrawn():
    bundle = wrap_module(nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), name="Served Net")
    spec = offer_model(bundle)
    try:
        assert list_models()[0] is spec and spec.name == "served net"
        assert load_model("Served Net") is bundle and find_spec("served net") is spec
        with pytest.raises(ModelError, match="is the name of a built-in model"):
            offer_model(wrap_module(bundle.module, name="resnet50"))
    finally:
        withdraw_model("served net")
    assert find_spec("served net") is None and list_models()[0].name == "efficientnet_lite0"


def test_zoo_lists_every_classifier_cnns_first():
    names = zoo_names()
    assert "torchvision:convnext_tiny" in names and "timm:resnet18d" in names and "torchvision:vit_b_16" in names
    assert len(names) > 1000
    kinds = [looks_like_cnn(n) for n in names]
    assert kinds.index(False) == kinds.count(True)  # every CNN before the first transformer
    assert not looks_like_cnn("timm:vit_small_patch16_224") and not looks_like_cnn("torchvision:swin_t")
    assert find_spec("torchvision:convnext_tiny").weights == ("pretrained", "random")
    assert find_spec("timm:nope") is None
    with pytest.raises(ModelError, match="timm has no classifier called 'resnet18x'. Did you mean"):
        load_model("timm:resnet18x", "random")


@pytest.mark.parametrize(
    ("name", "size", "layer"),
    [("torchvision:squeezenet1_0", (224, 224), "features.12"), ("timm:resnet10t", (176, 176), "layer3")],
)
def test_zoo_cnns_outside_the_registry_explain_with_random_weights(name, size, layer):
    bundle = load_model(name, "random")
    assert bundle.name == name and bundle.input_size == size and len(bundle.class_names) == 1000
    assert bundle.class_names[0] == "tench" and bundle.weights_source == "random"
    assert bundle.normalization.mean == pytest.approx((0.485, 0.456, 0.406))
    with leaves_model_untouched(bundle.module):
        result = Explainer(bundle).explain(synthetic_image(6, (64, 64)), layer=layer, methods=["gradcam", "saliency"])
    assert result["gradcam"].layer == layer and result["gradcam"].map.shape == size
    assert result["saliency"].applicable


def test_zoo_pretrained_offline_is_refused_quickly(monkeypatch):
    import socket
    import time

    def offline(*args, **kwargs):
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"Pretrained weights for timm:resnet10t could not be downloaded"):
        load_model("timm:resnet10t")
    assert time.monotonic() - start < 5


def test_report_command_takes_your_python_model(net_file, weights_file, tmp_path):
    from cnnvis.cli import main

    path, _ = weights_file
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    synthetic_image(8, (40, 40)).save(pictures / "one.png")
    out = tmp_path / "report"
    assert (
        main(
            [
                "report",
                "--model",
                f"{net_file}:build",
                "--weights",
                str(path),
                "--images",
                str(pictures),
                "--out",
                str(out),
                "--steps",
                "4",
            ]
        )
        == 0
    )
    index = (out / "index.csv").read_text().splitlines()
    assert len(index) == 2 and index[1].startswith("one.png,class ") and (out / "one.png").is_file()
