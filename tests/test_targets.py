"""Targets turn a model output into one score per sample: checked by hand on tiny tensors, and every refusal is
a TargetError whose message is one plain sentence."""

from __future__ import annotations

import pytest
import torch

from cnnvis_engine.errors import TargetError
from cnnvis_engine.targets import ClassTarget, RegressionTarget, SegmentationTarget, Target, resolve_target

LOGITS = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])  # (N=2, K=3)

# (N=1, K=3, H=2, W=3). Per-pixel argmax:  [[0, 1, 2],
#                                           [1, 1, 0]]
SEGMENTS = torch.tensor(
    [
        [
            [[5.0, 0.0, 0.0], [0.0, 1.0, 9.0]],
            [[1.0, 7.0, 0.0], [8.0, 6.0, 2.0]],
            [[0.0, 2.0, 4.0], [3.0, 0.0, 1.0]],
        ]
    ]
)


def refusal(call) -> str:
    """The TargetError message of `call()`, checked to be one plain sentence."""
    with pytest.raises(TargetError) as info:
        call()
    message = str(info.value)
    assert message[0].isupper() and message.endswith("."), message
    assert "Traceback" not in message and "tensor(" not in message, message
    return message


def test_class_target_picks_the_logit_of_each_sample():
    assert torch.equal(ClassTarget(2).score(LOGITS), torch.tensor([3.0, -6.0]))
    assert torch.equal(ClassTarget(0).score(LOGITS), torch.tensor([1.0, 4.0]))
    assert ClassTarget(1, name="goldfish").label == "goldfish (class 1)"
    assert ClassTarget(1).label == "class 1"
    assert isinstance(ClassTarget(0), Target)


def test_class_target_score_keeps_the_graph():
    logits = LOGITS.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ClassTarget(1).score(logits).sum(), logits)
    assert torch.equal(grad, torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))


@pytest.mark.parametrize("index", [3, -1, 1000])
def test_class_target_out_of_range(index):
    message = refusal(lambda: ClassTarget(index).score(LOGITS))
    assert str(index) in message and "0 to 2" in message


def test_class_target_needs_class_scores():
    message = refusal(lambda: ClassTarget(0).score(SEGMENTS))
    assert "(1, 3, 2, 3)" in message


def test_segmentation_target_sums_the_class_over_its_own_pixels():
    # class 1 wins at (0,1), (1,0), (1,1): 7 + 8 + 6
    assert torch.equal(SegmentationTarget(1).score(SEGMENTS), torch.tensor([21.0]))
    # class 2 wins only at (0,2): 4
    assert torch.equal(SegmentationTarget(2).score(SEGMENTS), torch.tensor([4.0]))
    # class 0 wins at (0,0) and (1,2): 5 + 9
    assert torch.equal(SegmentationTarget(0).score(SEGMENTS), torch.tensor([14.0]))
    expected_mask = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]])
    assert torch.equal(SegmentationTarget(1).mask(SEGMENTS), expected_mask)


def test_segmentation_target_box_is_x0_y0_x1_y1_in_output_pixels():
    # box x in [0, 2), y in [1, 2): pixels (1,0) and (1,1), both class 1: 8 + 6
    assert torch.equal(SegmentationTarget(1, box=(0, 1, 2, 2)).score(SEGMENTS), torch.tensor([14.0]))
    # box x in [1, 3), y in [0, 1): pixels (0,1) class 1 and (0,2) class 2
    assert torch.equal(SegmentationTarget(1, box=(1, 0, 3, 1)).score(SEGMENTS), torch.tensor([7.0]))
    assert torch.equal(SegmentationTarget(2, box=(1, 0, 3, 1)).score(SEGMENTS), torch.tensor([4.0]))
    assert "inside the box" in SegmentationTarget(1, box=(0, 0, 1, 1)).label


def test_segmentation_target_gradient_flows_only_through_the_masked_pixels():
    output = SEGMENTS.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(SegmentationTarget(1).score(output).sum(), output)
    expected = torch.zeros_like(SEGMENTS)
    expected[0, 1] = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    assert torch.equal(grad, expected)


def test_segmentation_target_single_logit_output():
    # one logit per pixel: class 1 where it is positive, its score is the logit; class 0 scores -logit
    output = torch.tensor([[[[2.0, -1.0], [-3.0, 0.5]]]])
    assert torch.equal(SegmentationTarget(1).score(output), torch.tensor([2.5]))
    assert torch.equal(SegmentationTarget(0).score(output), torch.tensor([4.0]))


def test_segmentation_target_refusals():
    assert "(2, 3)" in refusal(lambda: SegmentationTarget(0).score(LOGITS))
    message = refusal(lambda: SegmentationTarget(3).score(SEGMENTS))
    assert "3" in message and "0 to 2" in message


def test_regression_target_sums_selected_outputs():
    assert torch.equal(RegressionTarget().score(LOGITS), torch.tensor([2.0, 3.0]))
    assert torch.equal(RegressionTarget((0, 2)).score(LOGITS), torch.tensor([4.0, -2.0]))
    assert torch.equal(RegressionTarget((1,)).score(LOGITS), torch.tensor([-2.0, 5.0]))
    # any output shape is flattened per sample
    assert torch.equal(RegressionTarget((5,)).score(SEGMENTS), torch.tensor([9.0]))
    assert RegressionTarget().label == "all outputs"
    assert RegressionTarget((0, 2)).label == "outputs 0, 2"


def test_regression_target_refusals():
    message = refusal(lambda: RegressionTarget((0, 3)).score(LOGITS))
    assert "3" in message and "0 to 2" in message
    refusal(lambda: RegressionTarget(()).score(LOGITS))
    refusal(lambda: RegressionTarget((-1,)).score(LOGITS))


def test_resolve_target_defaults_and_class_numbers():
    names = ("a", "b", "c")
    top = resolve_target(None, LOGITS, "classification", names)
    assert top == ClassTarget(2, name="c")  # the first sample's top class
    assert resolve_target(1, LOGITS, "classification", names) == ClassTarget(1, name="b")
    assert resolve_target(7, LOGITS, "classification", names) == ClassTarget(7)  # unnamed; score() refuses it
    assert resolve_target(None, LOGITS, "regression", ()) == RegressionTarget()
    assert resolve_target(2, LOGITS, "regression", ()) == RegressionTarget((2,))
    assert resolve_target(2, SEGMENTS, "segmentation", names) == SegmentationTarget(2, name="c")
    explicit = RegressionTarget((0,))
    assert resolve_target(explicit, LOGITS, "classification", names) is explicit


def test_resolve_target_default_segment_prefers_the_largest_non_background_class():
    # background (0) covers 4 pixels, class 2 covers 2, class 1 none
    output = torch.zeros(1, 3, 2, 3)
    output[0, 0] = 1.0
    output[0, 2, 0, :2] = 5.0
    assert resolve_target(None, output, "segmentation", ("bg", "x", "y")) == SegmentationTarget(2, name="y")
    # only background: background it is
    assert (
        resolve_target(
            None, torch.ones(1, 3, 2, 2) * torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1), "segmentation", ()
        ).category
        == 0
    )


@pytest.mark.parametrize("bad", [True, False, "cat", 2.5, object()])
def test_resolve_target_refuses_what_is_not_a_target(bad):
    refusal(lambda: resolve_target(bad, LOGITS, "classification", ("a", "b", "c")))
