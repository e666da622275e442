"""Fine-tuned heads: a state_dict whose classifier has another number of outputs loads into a resized head."""

from __future__ import annotations

import io

import pytest
import timm
import torch
import torchvision
from torch import nn

from cnnvis_engine import Explainer, ModelFileError
from cnnvis_engine.models import load_model_file
from cnnvis_engine.models.heads import classifier_name, fit_head
from tests.conftest import synthetic_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ("cat", "dog", "bird")


def saved(state_dict: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def finetuned_resnet18() -> nn.Module:
    """resnet18 with its `fc` replaced for three classes, as fine-tuning does, and seeded weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = torchvision.models.resnet18()
        model.fc = nn.Linear(512, 3)
    return model.eval()


def test_a_resnet18_fine_tuned_to_three_classes_loads_with_its_labels(finetuned_resnet18: nn.Module) -> None:
    data = saved(finetuned_resnet18.state_dict())
    bundle = load_model_file(data, "pets.pth", architecture="resnet18", labels="\n".join(LABELS).encode())
    assert bundle.class_names == LABELS
    assert "classifier 'fc' was resized from 1,000 to 3 outputs" in bundle.description
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(bundle.module(x), finetuned_resnet18(x), atol=1e-5)
    explanation = Explainer(bundle).explain(synthetic_image(1), methods=["gradcam", "cam"])
    assert explanation.predictions[0].name in LABELS and explanation["cam"].applicable
    unnamed = load_model_file(data, "pets.pth", architecture="resnet18")
    assert unnamed.class_names == ("class 0", "class 1", "class 2")


def test_labels_that_do_not_match_the_resized_head_are_a_sentence(finetuned_resnet18: nn.Module) -> None:
    with pytest.raises(ModelFileError, match="names 2 classes, but the model has 3 outputs"):
        load_model_file(saved(finetuned_resnet18.state_dict()), "pets.pth", architecture="resnet18", labels=b"a\nb")


def test_a_head_with_other_inputs_or_another_wrong_layer_is_still_refused(finetuned_resnet18: nn.Module) -> None:
    weights = dict(finetuned_resnet18.state_dict())
    wrong_features = {**weights, "fc.weight": torch.zeros(3, 256)}
    with pytest.raises(ModelFileError, match=r"fc\.weight is \(3, 256\) in the file but \(1000, 512\) in resnet18"):
        load_model_file(saved(wrong_features), "w.pth", architecture="resnet18")
    wrong_backbone = {**weights, "conv1.weight": torch.zeros(64, 1, 7, 7)}
    with pytest.raises(ModelFileError, match=r"conv1\.weight is \(64, 1, 7, 7\) in the file"):
        load_model_file(saved(wrong_backbone), "w.pth", architecture="resnet18")


def test_a_timm_model_fine_tuned_to_five_classes_loads() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=5).eval()
    bundle = load_model_file(saved(model.state_dict()), "lite.pth", architecture="efficientnet_lite0")
    assert "classifier 'classifier' was resized from 1,000 to 5 outputs" in bundle.description
    assert bundle.module.num_classes == 5 and len(bundle.class_names) == 5
    assert bundle.normalization.mean == (127.0,) * 3 and bundle.normalization.std == (128.0,) * 3  # its own
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(bundle.module(x), model(x), atol=1e-5)


def test_the_classifier_is_found_by_timm_or_as_the_last_linear() -> None:
    assert classifier_name(timm.create_model("resnet18", pretrained=False)) == "fc"
    assert classifier_name(torchvision.models.mobilenet_v3_small()) == "classifier.3"
    assert classifier_name(torchvision.models.squeezenet1_0()) == "classifier.1"  # a 1×1 convolution
    assert classifier_name(nn.Sequential(nn.ReLU())) is None
    squeeze = torchvision.models.squeezenet1_0()
    theirs = torchvision.models.squeezenet1_0(num_classes=7).state_dict()
    assert "1,000 to 7 outputs" in fit_head(squeeze, theirs)
    squeeze.load_state_dict(theirs)
    assert squeeze(torch.zeros(1, 3, 64, 64)).shape == (1, 7)
