"""Plain words: readable layer kinds, pass-through layers, classes without names (cnnvis_ui/text.py)."""

from __future__ import annotations

from cnnvis_engine import LayerInfo
from cnnvis_engine.targets import ClassTarget
from cnnvis_ui import text as words


def layer(name: str, kind: str, shape=(16, 7, 7), calls: int = 1) -> LayerInfo:
    return LayerInfo(name, kind, shape, calls, True, 1, 0, 1, frozenset({"gradcam"}))


def test_layer_labels_say_what_the_layer_does():
    bn2 = layer("bn2", "BatchNormAct2d", (1280, 7, 7))
    assert words.layer_label(bn2) == "bn2 · batch norm + activation · 1280×7×7"
    assert words.layer_label(layer("conv_stem", "Conv2dSame")) == "conv_stem · convolution · 16×7×7"
    assert words.layer_label(layer("x", "MyFancyBlock", calls=2)) == "x · my fancy block · 16×7×7 · runs 2×"
    assert "`BatchNormAct2d`" in words.layer_detail(layer("bn2", "BatchNormAct2d"))


def test_identity_and_dropout_pass_their_input_on():
    assert layer("a", "Identity").passes_through and layer("b", "Dropout").passes_through
    assert not layer("c", "Conv2d").passes_through and not layer("d", "ReLU").passes_through


def test_a_class_without_a_name_is_named_once():
    assert words.class_name(("cat", "class 1", "", "3"), 0) == "cat (0)"
    assert [words.class_name(("cat", "class 1", "", "3"), i) for i in (1, 2, 3)] == ["class 1", "class 2", "class 3"]
    assert ClassTarget(1, name="class 1").label == "class 1"
    assert ClassTarget(281, name="tabby").label == "tabby (class 281)"
    assert ClassTarget(4).label == "class 4"
