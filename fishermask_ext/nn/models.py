"""Small classifiers for tests, benchmarks and experiments, and a name -> class registry.

Every model returns logits [n, num_classes]; with `return_embedding=True` it returns
`(logits, embedding)`, the DeepAL/BADGE convention, where the embedding [n, E] is the input of
the final Linear layer.
"""
import inspect
import math

import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_keys

__all__ = ["MLP", "SmallCNN", "ResNet18Narrow", "get_model", "MODELS"]


class _Classifier(nn.Module):
    """Shared tail: `self.features(x)` -> embedding, `self.linear` -> logits."""

    def __init__(self, return_embedding):
        super().__init__()
        self.return_embedding = return_embedding

    def forward(self, x):  # x: [n, ...]
        emb = self.features(x)                                   # [n, E]
        logits = self.linear(emb)                                # [n, num_classes]
        return (logits, emb) if self.return_embedding else logits


class MLP(_Classifier):
    """Flatten, then Linear + ReLU per hidden width, then Linear to the classes. `in_features`
    is the number of values per input (784 for 28x28 images, 64 for the 8x8 digits); inputs of
    another size get a ValueError naming it."""

    def __init__(self, in_features=784, num_classes=10, hidden=(64,), return_embedding=False):
        super().__init__(return_embedding)
        self.in_features = in_features
        layers, width = [nn.Flatten()], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(width, num_classes)

    def forward(self, x):  # x: [n, ...] with in_features values per input
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.in_features:
            per = math.prod(x.shape[1:]) if x.dim() >= 2 else "?"
            raise ValueError(f"MLP(in_features={self.in_features}) got inputs of shape "
                             f"{tuple(x.shape)}, {per} values each; build it with "
                             f"get_model('mlp', in_features={per}, ...)")
        return super().forward(x)


class SmallCNN(_Classifier):
    """Tiny CNN covering the conv variants step C supports: a plain, a strided, a dilated and a
    grouped Conv2d, BatchNorm (one followed by an in-place ReLU), then two Linear layers."""

    def __init__(self, in_channels=3, num_classes=10, input_size=32, width=8, hidden=32,
                 return_embedding=False):
        super().__init__(return_embedding)
        w = width
        side = (input_size + 1) // 2                             # after the stride-2 conv
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1, groups=2), nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(2 * w * side * side, hidden), nn.ReLU())
        self.linear = nn.Linear(hidden, num_classes)


class BasicBlock(nn.Module):
    """ResNet basic block; the shortcut is added in place, as in the reference code."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):  # x: [n, in_planes, H, W]
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class ResNet18Narrow(_Classifier):
    """The FisherMask paper's narrow ResNet-18: BasicBlock [2, 2, 2, 2], widths 16-32-64-128,
    3x3 stride-1 stem, no max-pool, 4x4 average pool, bias-free Linear 128 -> classes.
    701,456 parameters for 3 input channels and 10 classes."""

    def __init__(self, num_classes=10, in_channels=3, return_embedding=False):
        super().__init__(return_embedding)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2), (128, 2)):
            blocks.append(nn.Sequential(BasicBlock(in_planes, planes, stride),
                                        BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        self.linear = nn.Linear(128, num_classes, bias=False)

    def features(self, x):  # x: [n, in_channels, 32, 32] -> [n, 128]
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.avg_pool2d(out, 4).flatten(1)


MODELS = {"mlp": MLP, "small_cnn": SmallCNN, "resnet18_narrow": ResNet18Narrow}


def get_model(name, **kwargs):
    """A new model of registry name `name` (see MODELS), built with `kwargs`."""
    check_choice(name, "model", sorted(MODELS))
    check_keys(kwargs, [p for p in inspect.signature(MODELS[name]).parameters if p != "self"],
               f"model {name!r}")
    return MODELS[name](**kwargs)
