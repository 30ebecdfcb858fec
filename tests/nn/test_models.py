import pytest
import torch
from torch import nn

from fishermask_ext.nn.models import MLP, MODELS, ResNet18Narrow, SmallCNN, get_model


def test_resnet18_narrow_has_the_papers_parameter_count():
    model = ResNet18Narrow(num_classes=10, in_channels=3)
    assert sum(p.numel() for p in model.parameters()) == 701_456
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.linear.bias is None and model.linear.in_features == 128


@pytest.mark.parametrize("model, x, emb_dim", [
    (MLP(in_features=12, num_classes=4, hidden=(7, 5)), torch.randn(3, 3, 4), 5),
    (SmallCNN(in_channels=1, num_classes=4, input_size=9, hidden=6), torch.randn(3, 1, 9, 9), 6),
    (ResNet18Narrow(num_classes=4, in_channels=1), torch.randn(2, 1, 32, 32), 128),
])
def test_models_return_logits_or_logits_and_the_classifier_input(model, x, emb_dim):
    model.eval()
    logits = model(x)
    assert logits.shape == (len(x), 4)
    model.return_embedding = True
    logits2, emb = model(x)
    assert emb.shape == (len(x), emb_dim)
    assert torch.equal(logits2, logits) and torch.equal(model.linear(emb), logits)


def test_small_cnn_has_strided_dilated_and_grouped_convs():
    convs = [m for m in SmallCNN().modules() if isinstance(m, nn.Conv2d)]
    assert any(c.stride == (2, 2) for c in convs)
    assert any(c.dilation == (2, 2) for c in convs)
    assert any(c.groups == 2 for c in convs)
    assert any(isinstance(m, nn.BatchNorm2d) for m in SmallCNN().modules())


def test_get_model_builds_registered_models_and_lists_valid_names():
    assert isinstance(get_model("resnet18_narrow", num_classes=3), ResNet18Narrow)
    assert get_model("mlp", in_features=4, num_classes=2)(torch.randn(5, 4)).shape == (5, 2)
    with pytest.raises(ValueError,
                       match="model must be one of " + ", ".join(map(repr, sorted(MODELS)))):
        get_model("resnet18")
