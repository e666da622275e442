"""The explainer end to end: values computed by hand on a tiny model, the offline default's prediction, no hook
and no state change after any method (also after every kind of error), one forward pass per image however
target and layer change, and identical results when 8 threads share one explainer."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    TINY_CLASSES,
    TINY_SIZE,
    assert_untouched,
    leaves_model_untouched,
    make_tiny_bundle,
    make_tiny_module,
    synthetic_image,
)
from torch import nn

from cnnvis_engine.errors import EngineError, LayerError, MethodError, ModelError, TargetError
from cnnvis_engine.explainer import ARTICLE_METHODS, Explainer
from cnnvis_engine.hooks import count_hooks, model_state
from cnnvis_engine.images import decode_image
from cnnvis_engine.models import ModelBundle
from cnnvis_engine.targets import ClassTarget, RegressionTarget


def sentence(error: BaseException) -> str:
    message = str(error)
    assert message[0].isupper() and "Traceback" not in message, message
    return message


# ----- hand-computed values on the tiny model ----------------------------------------------------------------
class Tiny:
    """The tiny model's forward pass written out with plain ops: z = conv(x), A = ReLU(z), logits = W·mean(A) + b."""

    def __init__(self, bundle: ModelBundle, image) -> None:
        module = bundle.module
        self.x = bundle.prepare(image.image)[1][None].detach()  # (1, 3, 4, 4)
        self.conv_w, self.conv_b = module.conv.weight.detach(), module.conv.bias.detach()
        self.fc_w, self.fc_b = module.fc.weight.detach(), module.fc.bias.detach()
        self.z = F.conv2d(self.x, self.conv_w, self.conv_b, padding=1)[0]  # (2, 4, 4)
        self.a = self.z.clamp(min=0)
        self.logits = self.fc_w @ self.a.mean(dim=(1, 2)) + self.fc_b  # (3,)
        self.pixels = self.z.shape[1] * self.z.shape[2]

    def input_gradient(self, c: int, guided: bool) -> torch.Tensor:
        """d logit_c / d x: dlogit/dA_k = W[c, k] / 16 everywhere, through ReLU (z > 0), back through the conv."""
        upstream = self.fc_w[c].clamp(min=0) if guided else self.fc_w[c]  # guided: only positive gradient passes
        grad_z = (upstream / self.pixels)[:, None, None] * (self.z > 0).float()
        return F.conv_transpose2d(grad_z[None], self.conv_w, padding=1)[0]  # (3, 4, 4)


@pytest.fixture
def tiny(tiny_bundle, tiny_image) -> Tiny:
    return Tiny(tiny_bundle, tiny_image)


def test_tiny_model_is_a_useful_example(tiny):
    # both signs before the ReLU, class rows with mixed, all-negative and all-positive weights
    assert (tiny.z > 0).any() and (tiny.z < 0).any()
    assert (tiny.fc_w[0] > 0).any() and (tiny.fc_w[0] < 0).any()
    assert (tiny.fc_w[1] < 0).all() and (tiny.fc_w[2] > 0).all()


def test_prediction_equals_softmax_of_hand_logits(tiny_bundle, tiny_image, tiny):
    predictions = Explainer(tiny_bundle).predict(tiny_image, top_k=3)
    probabilities = torch.softmax(tiny.logits, dim=0)
    assert [p.index for p in predictions] == torch.argsort(probabilities, descending=True).tolist()
    assert predictions[0].name == TINY_CLASSES[predictions[0].index]
    expected = probabilities.sort(descending=True).values
    np.testing.assert_allclose([p.probability for p in predictions], expected, rtol=1e-6)


@pytest.mark.parametrize("c", [0, 1, 2])
def test_gradcam_by_hand_at_the_relu(tiny_bundle, tiny_image, tiny, c):
    result = Explainer(tiny_bundle).explain(tiny_image, layer="relu", target=c, methods=["gradcam"])["gradcam"]
    # dlogit_c / dA_k[i, j] = W[c, k] / 16, so the channel weights are W[c, k] / 16
    expected = (tiny.fc_w[c] / tiny.pixels @ tiny.a.flatten(1)).view(4, 4).clamp(min=0)
    np.testing.assert_allclose(result.raw, expected.numpy(), rtol=1e-5, atol=1e-7)
    span = expected.max() - expected.min()
    expected_map = (expected - expected.min()) / span if span > 0 else torch.zeros_like(expected)
    np.testing.assert_allclose(result.map, expected_map.numpy(), rtol=1e-5, atol=1e-6)  # 4×4 input: no resize
    assert result.meta["flat"] == bool(span == 0)
    assert (c == 1) == result.meta["flat"]  # class 1's weights are all negative: nothing survives the ReLU


@pytest.mark.parametrize("c", [0, 2])
def test_gradcam_by_hand_at_the_conv_before_an_inplace_relu(tiny_bundle, tiny_image, tiny, c):
    result = Explainer(tiny_bundle).explain(tiny_image, layer="conv", target=c, methods=["gradcam"])["gradcam"]
    # dlogit_c / dz_k[i, j] = W[c, k] / 16 · 1[z_k > 0]; the map weighs the true (signed) conv output z
    weights = tiny.fc_w[c] / tiny.pixels * (tiny.z > 0).float().mean(dim=(1, 2))
    expected = (weights @ tiny.z.flatten(1)).view(4, 4).clamp(min=0)
    np.testing.assert_allclose(result.raw, expected.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("c", [0, 1, 2])
def test_cam_by_hand(tiny_bundle, tiny_image, tiny, c):
    result = Explainer(tiny_bundle).explain(tiny_image, target=c, methods=["cam"])["cam"]
    expected = (tiny.fc_w[c] @ tiny.a.flatten(1)).view(4, 4)
    assert result.layer == "relu"
    np.testing.assert_allclose(result.raw, expected.numpy(), rtol=1e-5, atol=1e-7)
    assert result.meta["bias"] == pytest.approx(float(tiny.fc_b[c]), abs=1e-7)
    assert float(result.raw.mean()) + result.meta["bias"] == pytest.approx(float(tiny.logits[c]), abs=1e-6)


def test_cam_for_a_regression_target_sums_the_rows(tiny_bundle, tiny_image, tiny):
    result = Explainer(tiny_bundle).explain(tiny_image, target=RegressionTarget((0, 2)), methods=["cam"])["cam"]
    expected = ((tiny.fc_w[0] + tiny.fc_w[2]) @ tiny.a.flatten(1)).view(4, 4)
    np.testing.assert_allclose(result.raw, expected.numpy(), rtol=1e-5, atol=1e-7)
    logits = float(tiny.logits[0] + tiny.logits[2])
    assert float(result.raw.mean()) + result.meta["bias"] == pytest.approx(logits, abs=1e-6)


@pytest.mark.parametrize("c", [0, 1, 2])
def test_saliency_and_guided_backprop_by_hand(tiny_bundle, tiny_image, tiny, c):
    res = Explainer(tiny_bundle).explain(tiny_image, target=c, methods=["saliency", "guided_backprop"])
    plain = tiny.input_gradient(c, guided=False)
    # the closed form agrees with autograd through plain functional ops
    x = tiny.x.clone().requires_grad_(True)
    logit = tiny.fc_w[c] @ F.relu(F.conv2d(x, tiny.conv_w, tiny.conv_b, padding=1)).mean(dim=(2, 3))[0] + tiny.fc_b[c]
    (autograd,) = torch.autograd.grad(logit, x)
    torch.testing.assert_close(plain, autograd[0], rtol=1e-5, atol=1e-7)

    np.testing.assert_allclose(res["saliency"].raw, plain.abs().amax(dim=0).numpy(), rtol=1e-5, atol=1e-7)
    guided = tiny.input_gradient(c, guided=True)
    np.testing.assert_allclose(res["guided_backprop"].raw, guided.numpy(), rtol=1e-5, atol=1e-7)
    assert res["guided_backprop"].rgb.shape == (4, 4, 3)
    if c == 1:  # all-negative class weights: guided backprop lets nothing through
        assert (res["guided_backprop"].raw == 0).all() and (res["guided_backprop"].map == 0).all()


def test_guided_gradcam_by_hand(tiny_bundle, tiny_image, tiny):
    res = Explainer(tiny_bundle).explain(tiny_image, layer="relu", target=0, methods=["guided_gradcam"])
    result = res["guided_gradcam"]
    cam = (tiny.fc_w[0] / tiny.pixels @ tiny.a.flatten(1)).view(4, 4).clamp(min=0)
    mask = (cam - cam.min()) / (cam.max() - cam.min())
    np.testing.assert_allclose(result.raw, (tiny.input_gradient(0, guided=True) * mask).numpy(), rtol=1e-5, atol=1e-7)


def test_feature_maps_and_kernels_by_hand(tiny_bundle, tiny_image, tiny):
    res = Explainer(tiny_bundle).explain(tiny_image, layer="conv", methods=["feature_maps", "kernels"])
    maps = res["feature_maps"]
    np.testing.assert_allclose(maps.raw, tiny.z.numpy(), rtol=1e-5, atol=1e-7)  # before the in-place ReLU
    means = tiny.z.mean(dim=(1, 2))
    assert maps.meta["channels"] == torch.argsort(means, descending=True).tolist()
    first = tiny.z[maps.meta["channels"][0]]
    np.testing.assert_allclose(maps.map[0], ((first - first.min()) / (first.max() - first.min())).numpy(), atol=1e-6)
    kernels = res["kernels"]
    np.testing.assert_array_equal(kernels.raw, tiny.conv_w.numpy())
    assert kernels.map.shape == (2, 3, 3, 3) and kernels.meta["rgb"]  # (out, kh, kw, RGB)
    patch = tiny.conv_w[1]
    expected_patch = ((patch - patch.min()) / (patch.max() - patch.min())).permute(1, 2, 0)
    np.testing.assert_allclose(kernels.map[1], expected_patch.numpy(), atol=1e-6)


# ----- the offline default -----------------------------------------------------------------------------------
def test_offline_default_sees_a_cat(zoo, cat):
    bundle = zoo("efficientnet_lite0")
    assert bundle.weights_source == "embedded"
    top = Explainer(bundle).predict(cat, top_k=5)
    assert 281 <= top[0].index <= 285, top  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert "cat" in top[0].name.lower() and top[0].probability > 0.3


# ----- hooks and state ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet18(zoo):
    """The zoo's random-weight resnet18 at 112×112: the same modules (ReLU(inplace=True) shared within each
    block, `out += identity`), a quarter of the work of 224×224."""
    shared = zoo("resnet18")
    return ModelBundle(name="resnet18", module=shared.module, class_names=shared.class_names, input_size=(112, 112))


@pytest.mark.parametrize("method", ARTICLE_METHODS)
def test_every_method_leaves_no_hook_and_no_state_change(resnet18, cat, method):
    module = resnet18.module
    with leaves_model_untouched(module):
        result = Explainer(resnet18).explain(cat, methods=[method])[method]
    assert result.applicable, result.reason
    # a second call on a cached pass, another target and a layer whose output the in-place ReLU overwrites
    explainer = Explainer(resnet18)
    with leaves_model_untouched(module):
        explainer.explain(cat, methods=[method], target=3)
        explainer.explain(cat, methods=[method], target=5, layer="bn1")


def test_all_methods_together_leave_the_tiny_model_untouched(tiny_bundle, tiny_image):
    with leaves_model_untouched(tiny_bundle.module):
        res = Explainer(tiny_bundle).explain(tiny_image, methods=ARTICLE_METHODS)
    assert all(r.applicable for r in res.values())


def test_training_flags_and_frozen_parameters_are_kept(tiny_image):
    module = make_tiny_module()
    module.train()
    module.conv.weight.requires_grad_(False)  # a partly frozen model in training mode
    bundle = make_tiny_bundle(module)
    with leaves_model_untouched(module):
        res = Explainer(bundle).explain(tiny_image, methods=["gradcam", "saliency", "guided_backprop", "cam"])
    assert module.training and all(m.training for m in module.modules())
    assert not module.conv.weight.requires_grad and module.conv.bias.requires_grad
    assert res["saliency"].raw.max() > 0


def test_existing_grads_are_left_alone(tiny_image):
    module = make_tiny_module()
    module.fc.weight.grad = torch.ones_like(module.fc.weight)
    before, grad = model_state(module), module.fc.weight.grad.clone()
    Explainer(make_tiny_bundle(module)).explain(tiny_image, methods=ARTICLE_METHODS)
    assert model_state(module) == before and torch.equal(module.fc.weight.grad, grad) and count_hooks(module) == 0


class Broken(nn.Module):
    """Runs its first layers, then fails: hooks are on every submodule when the error comes."""

    def __init__(self, when: str = "always") -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(2, 3)
        self.when = when

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(x)).mean(dim=(2, 3))
        if self.when == "always" or (self.when == "dark" and float(x.detach().mean()) < -1):
            raise RuntimeError("shape mismatch in layer 7\nsecond line of a long torch message")
        return self.fc(h)


def test_errors_leave_no_hook_and_no_state_change(resnet18, cat):
    module = resnet18.module
    explainer = Explainer(resnet18)
    cases = [
        (LayerError, {"layer": "layer9", "methods": ["gradcam"]}, "layer9"),
        (LayerError, {"layers": {"feature_maps": "nope"}, "methods": ["feature_maps"]}, "nope"),
        (TargetError, {"target": 1000, "methods": ["gradcam"]}, "1000"),
        (TargetError, {"target": -3, "methods": ["saliency"]}, "-3"),
        (TargetError, {"target": True, "methods": ["gradcam"]}, "True"),
        (TargetError, {"target": "tabby", "methods": ["cam"]}, "str"),
        (TargetError, {"target": ClassTarget(5000), "methods": ["guided_backprop"]}, "5000"),
        (MethodError, {"methods": ["gradcam", "lime"]}, "lime"),
    ]
    for error, kwargs, mentioned in cases:
        with leaves_model_untouched(module), pytest.raises(error) as info:
            explainer.explain(cat, **kwargs)
        assert mentioned in sentence(info.value), (kwargs, str(info.value))
    # the explainer still works, with the pass it cached before the errors
    with leaves_model_untouched(module):
        assert explainer.explain(cat, methods=["gradcam"])["gradcam"].layer == "layer4"


def test_unknown_method_lists_the_available_ones(tiny_bundle, tiny_image):
    with pytest.raises(MethodError) as info:
        Explainer(tiny_bundle).explain(tiny_image, methods=["smoothgrad_unknown"])
    assert all(m in str(info.value) for m in ARTICLE_METHODS)


def test_a_model_that_raises_in_forward_gives_a_model_error(tiny_image):
    module = Broken().eval()
    bundle = ModelBundle(name="broken", module=module, class_names=TINY_CLASSES, input_size=TINY_SIZE)
    explainer = Explainer(bundle)
    for call in (
        lambda: explainer.explain(tiny_image, methods=["gradcam"]),
        lambda: explainer.predict(tiny_image),
        lambda: explainer.trace(tiny_image),
    ):
        with leaves_model_untouched(module), pytest.raises(ModelError) as info:
            call()
        message = sentence(info.value)
        assert "broken" in message and "shape mismatch in layer 7" in message and "second line" not in message


def test_a_model_that_fails_on_one_image_keeps_working_on_others(tiny_image):
    module = Broken(when="dark").eval()
    bundle = ModelBundle(name="picky", module=module, class_names=TINY_CLASSES, input_size=TINY_SIZE)
    explainer = Explainer(bundle)
    dark = decode_image(synthetic_image(3, (8, 8)).point(lambda v: 0))
    with leaves_model_untouched(module), pytest.raises(ModelError):
        explainer.explain(dark, methods=["saliency"])
    with leaves_model_untouched(module):
        assert explainer.explain(tiny_image, methods=["saliency", "gradcam"])["saliency"].applicable


def test_a_target_that_raises_leaves_no_hook(resnet18, cat):
    class Exploding:
        label = "exploding"

        def score(self, output: torch.Tensor) -> torch.Tensor:
            raise TargetError("This target cannot be scored.")

    with leaves_model_untouched(resnet18.module), pytest.raises(TargetError):
        Explainer(resnet18).explain(cat, target=Exploding(), methods=["gradcam", "saliency"])


# ----- one forward pass per image ----------------------------------------------------------------------------
class CountingModel(nn.Module):
    """Wraps a model and counts its forward() calls (hooks belong in hooks.py, so no counting hook)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return self.net(x)


def test_changing_target_or_layer_does_not_run_the_model_again(resnet18, samples):
    counting = CountingModel(resnet18.module)
    bundle = dataclasses.replace(resnet18, name="counted", module=counting, lock=threading.RLock())
    explainer = Explainer(bundle, cache_size=2)
    cat, coffee = samples["cat"], samples["coffee"]
    methods = ["gradcam", "cam", "saliency", "guided_backprop", "guided_gradcam", "feature_maps"]

    first = explainer.explain(cat, methods=methods)
    assert first.layer == "net.layer4" and first["cam"].layer == "net.layer4"
    after_first = counting.forwards
    assert after_first == 1
    for target in (3, 999, RegressionTarget((1, 2))):
        for layer in ("net.layer3", "net.layer2.1", "net.conv1", "net.maxpool"):
            explainer.explain(cat, target=target, layer=layer, methods=methods)
    explainer.trace(cat), explainer.predict(cat), explainer.layers(cat, "gradcam")
    assert counting.forwards == after_first

    explainer.explain(coffee, target=5, methods=methods)  # a new image: one forward pass
    assert counting.forwards == after_first + 1
    explainer.explain(cat, target=7, layer="net.layer3", methods=methods)  # still cached (cache_size=2)
    assert counting.forwards == after_first + 1


def test_changing_to_a_layer_overwritten_in_place_does_not_run_the_model_again(resnet18, samples):
    """`bn1`'s output is overwritten by ReLU(inplace=True), `layer1.0.bn2`'s by `out += identity`. Their true
    values are recomputed by the layer alone and their gradients caught at their graph nodes, so switching to
    them never runs the model again."""
    cat, coffee = samples["cat"], samples["coffee"]
    counting = CountingModel(resnet18.module)
    bundle = dataclasses.replace(resnet18, name="counted", module=counting, lock=threading.RLock())
    explainer = Explainer(bundle)
    explainer.explain(cat, methods=["gradcam"])
    assert counting.forwards == 1
    for target in (None, 3):
        for layer in ("net.bn1", "net.layer1.0.bn1", "net.layer1.0.bn2", "net.layer4.1.bn2", "net.layer4"):
            res = explainer.explain(cat, target=target, layer=layer, methods=["gradcam", "feature_maps", "cam"])
            if "bn" in layer:
                assert res["feature_maps"].raw.min() < 0
    assert counting.forwards == 1
    explainer.explain(coffee, layer="net.bn1", methods=["gradcam", "feature_maps"])
    assert counting.forwards == 2  # a new image: one forward pass


# ----- one-off batches: the graph from the layer on ------------------------------------------------------------
LEAN_METHODS = ["gradcam", "cam", "feature_maps", "gradcam++", "layercam", "kernels", "guided_gradcam"]


@pytest.fixture
def lean_passes(monkeypatch):
    """Every `_lean_pass` result, None where a whole pass had to run instead."""
    seen = []
    original = Explainer._lean_pass

    def spy(self, *args, **kwargs):
        seen.append(original(self, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(Explainer, "_lean_pass", spy)
    return seen


@pytest.mark.parametrize("layer", ["layer4", "layer3.1.bn2", "bn1", "layer1.0.bn2", "layer1.1.relu", "layer2", "conv1"])
def test_a_one_off_batch_keeps_only_its_layers_and_equals_explain(resnet18, samples, lean_passes, layer):
    """Once a whole pass has traced the input shape, `explain_batch` (whose pass serves no other call) runs
    without gradients up to its layer and keeps only the outputs its methods use. Its results equal a whole
    pass's at a block, at BatchNorm outputs overwritten by ReLU(inplace=True) and by `out += identity`, at a block's
    shared `relu` (its last call), and at the first layer. Guided Grad-CAM takes a gradient to the input: whole pass."""
    images, targets = [samples["cat"], samples["coffee"]], [281, 5]
    explainer = Explainer(resnet18)
    explainer.explain(images[0], methods=["feature_maps"])  # traces this input shape
    with leaves_model_untouched(resnet18.module):
        batch = explainer.explain_batch(images, layer=layer, targets=targets, methods=LEAN_METHODS[:-1])
    fp = lean_passes[-1]
    assert fp is not None and not fp.x.requires_grad
    assert {name for name, calls in fp.calls.items() if calls[-1].output is not None} == {layer, "layer4"}
    assert len(fp.calls["layer1.0.relu"]) == 2  # every call is recorded, kept or not
    whole = Explainer(resnet18).explain_batch(images, layer=layer, targets=targets, methods=LEAN_METHODS[:-1])
    assert lean_passes[-1] is None  # a new explainer has no trace yet: a whole pass
    for lean, full in zip(batch, whole):
        assert lean.predictions == full.predictions
        for method in LEAN_METHODS[:-1]:
            a, b = lean[method], full[method]
            assert a.applicable == b.applicable and a.layer == b.layer, (method, a.reason, b.reason)
            if a.applicable:
                np.testing.assert_allclose(a.raw, b.raw, rtol=1e-6, atol=1e-7 * float(np.abs(b.raw).max()))
                np.testing.assert_allclose(a.map, b.map, atol=1e-6)
    tried = len(lean_passes)
    explainer.explain_batch(images, layer=layer, targets=targets, methods=LEAN_METHODS)
    assert len(lean_passes) == tried  # guided Grad-CAM needs the input's gradient: no lean pass was tried


class Branchy(nn.Module):
    """Runs `left` or `right` depending on the input's mean: one input shape, two different module sequences."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.left, self.right = nn.Conv2d(4, 4, 3, padding=1), nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.left(x) if x.mean() > 0 else self.right(x))


def test_a_one_off_batch_that_runs_other_modules_gets_a_whole_pass(lean_passes):
    torch.manual_seed(0)
    bundle = make_tiny_bundle(Branchy().eval())
    explainer = Explainer(bundle)
    positive, negative = torch.full((1, 3, *TINY_SIZE), 2.0), torch.full((1, 3, *TINY_SIZE), -2.0)
    assert (bundle.module.stem(positive).mean() > 0) != (bundle.module.stem(negative).mean() > 0)
    explainer.explain_batch(positive, layer="stem", methods=["gradcam"])  # a whole pass traces the left path
    assert lean_passes == [None]
    with leaves_model_untouched(bundle.module):
        lean = explainer.explain_batch(positive, layer="stem", targets=2, methods=["gradcam", "feature_maps"])[0]
        other = explainer.explain_batch(negative, layer="stem", targets=2, methods=["gradcam", "feature_maps"])[0]
    assert lean_passes[1] is not None and lean_passes[2] is None  # the right path: a whole pass instead
    whole = Explainer(bundle).explain_batch(negative, layer="stem", targets=2, methods=["gradcam", "feature_maps"])[0]
    np.testing.assert_allclose(other["gradcam"].raw, whole["gradcam"].raw, rtol=1e-6)
    assert lean["gradcam"].applicable and np.abs(lean["gradcam"].raw).max() > 0


def test_a_one_off_batch_that_fails_mid_pass_leaves_gradients_off_and_no_wrapper(lean_passes):
    class FailsOnDemand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.fail = make_tiny_module(), False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.body.relu(self.body.conv(x))
            if self.fail:
                raise RuntimeError("simulated failure after the layer")
            return self.body.fc(self.body.flatten(self.body.pool(x)))

    bundle = make_tiny_bundle(FailsOnDemand().eval())
    explainer = Explainer(bundle)
    explainer.explain_batch(torch.zeros(1, 3, *TINY_SIZE), methods=["gradcam"])
    bundle.module.fail = True
    with torch.no_grad():
        with leaves_model_untouched(bundle.module), pytest.raises(ModelError, match="simulated"):
            explainer.explain_batch(torch.zeros(1, 3, *TINY_SIZE), layer="body.conv", methods=["gradcam"])
        assert not torch.is_grad_enabled()  # the caller's no_grad holds: the switch inside the pass was undone
    assert lean_passes == [None]  # the failed call raised inside its lean pass


# ----- threads -----------------------------------------------------------------------------------------------
THREAD_METHODS = ("gradcam", "cam", "saliency", "guided_backprop", "feature_maps")
THREAD_TARGETS = (None, 1, 281, 999, 500)
THREAD_LAYERS = (None, "layer3", "layer2", "bn1")


def result_arrays(explanation) -> dict[str, np.ndarray]:
    arrays = {}
    for method, result in explanation.items():
        for field in ("map", "raw", "rgb"):
            value = getattr(result, field)
            if value is not None:
                arrays[f"{method}.{field}"] = value
    return arrays


def test_threads_sharing_one_explainer_get_the_serial_results(resnet18, samples):
    bundle = ModelBundle(name="resnet18", module=resnet18.module, class_names=resnet18.class_names, input_size=(48, 48))
    images = [*samples.values(), *(decode_image(synthetic_image(seed, (40 + 9 * seed, 64))) for seed in range(4))]
    jobs = [
        [(images[(t + j) % 8], THREAD_TARGETS[(3 * t + j) % 5], THREAD_LAYERS[(t + 2 * j) % 4]) for j in range(10)]
        for t in range(8)
    ]
    before = model_state(bundle.module)

    serial_explainer = Explainer(bundle, cache_size=8)  # every image recorded once
    serial = [
        [serial_explainer.explain(im, target=tg, layer=ly, methods=THREAD_METHODS) for im, tg, ly in row]
        for row in jobs
    ]

    shared = Explainer(bundle, cache_size=2)  # 8 images, 2 kept: passes are evicted and recorded again concurrently
    start = threading.Barrier(8)

    def work(row):
        start.wait()
        return [shared.explain(im, target=tg, layer=ly, methods=THREAD_METHODS) for im, tg, ly in row]

    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(work, jobs))

    assert_untouched(bundle.module, before)
    exact = 0
    for serial_row, threaded_row in zip(serial, threaded):
        for expected, got in zip(serial_row, threaded_row):
            assert got.target == expected.target and got.layer == expected.layer
            assert [p.index for p in got.predictions] == [p.index for p in expected.predictions]
            want, have = result_arrays(expected), result_arrays(got)
            assert want.keys() == have.keys()
            for key in want:
                exact += np.array_equal(want[key], have[key])
                atol = 1e-6 * max(1.0, float(np.abs(want[key]).max()))
                np.testing.assert_allclose(have[key], want[key], rtol=1e-6, atol=atol, err_msg=key)
    assert exact > 0


def test_threads_sharing_one_explainer_get_the_serial_one_off_batches(resnet18, samples, lean_passes):
    """One-off batches switch gradients on halfway through their pass: grad mode is per thread, and the pass holds
    the bundle's lock, so 8 threads of lean `explain_batch` calls (with the trace shared) equal the serial ones,
    and every thread's own grad mode is as it was."""
    bundle = ModelBundle(name="resnet18", module=resnet18.module, class_names=resnet18.class_names, input_size=(48, 48))
    images = [*samples.values(), *(decode_image(synthetic_image(seed, (40 + 9 * seed, 64))) for seed in range(4))]
    methods = ("gradcam", "cam", "feature_maps")
    jobs = [
        [
            (
                [images[(t + j) % 8], images[(t + j + 3) % 8]],
                [THREAD_TARGETS[(3 * t + j) % 5], 7],
                THREAD_LAYERS[(t + 2 * j) % 4],
            )
            for j in range(5)
        ]
        for t in range(8)
    ]
    serial_explainer = Explainer(bundle)
    serial_explainer.trace(images[0])
    serial = [
        [serial_explainer.explain_batch(ims, targets=tgs, layer=ly, methods=methods) for ims, tgs, ly in row]
        for row in jobs
    ]
    shared = Explainer(bundle)
    shared.trace(images[0])
    start = threading.Barrier(8)

    def work(row):
        start.wait()
        grad_mode = torch.is_grad_enabled()
        results = [shared.explain_batch(ims, targets=tgs, layer=ly, methods=methods) for ims, tgs, ly in row]
        assert torch.is_grad_enabled() == grad_mode
        return results

    before = model_state(bundle.module)
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(work, jobs))
    assert_untouched(bundle.module, before)
    assert len(lean_passes) == 2 * 8 * 5 and all(fp is not None for fp in lean_passes)
    for serial_row, threaded_row in zip(serial, threaded):
        for expected_batch, got_batch in zip(serial_row, threaded_row):
            for expected, got in zip(expected_batch, got_batch):
                want, have = result_arrays(expected), result_arrays(got)
                assert want.keys() == have.keys() and got.layer == expected.layer
                for key in want:
                    np.testing.assert_array_equal(have[key], want[key], err_msg=key)


def test_engine_errors_are_engine_errors():
    for error in (LayerError, TargetError, MethodError, ModelError):
        assert issubclass(error, EngineError)
