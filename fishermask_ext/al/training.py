"""Pieces of the reference training rule that torch has no batch form of: the per-image random
crop and flip, and the round-to-round reset of Conv and Linear layers that keeps BatchNorm."""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["crop_flip", "reset_conv_linear", "CROP_PADDING"]

CROP_PADDING = 4     # RandomCrop(32, padding=4) of the reference's CIFAR-10 transform


def crop_flip(x, generator, padding=CROP_PADDING):
    """A random crop of each image's own size after zero padding by `padding` pixels, then a
    horizontal flip with probability 1/2, drawn per image from `generator`.

    x: [n, C, H, W] (already normalised, so the zero padding is the pool's mean colour, where
    torchvision pads black pixels before normalising). Written here because torchvision's
    transforms draw one crop per call, not one per image of a batch, and torchvision is not a
    dependency of the driver.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = top[:, None] + torch.arange(h)                                     # [n, H]
    cols = left[:, None] + torch.arange(w)                                    # [n, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)   # a flip reads the columns reversed
    # Advanced indices on dims 0, 2, 3 around a slice: the result is [n, H, W, C].
    out = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def reset_conv_linear(model):
    """Re-initialise every Conv and Linear layer of `model` in place (their own
    reset_parameters, from torch's global generator); BatchNorm weights and running statistics
    stay as they are, as in the reference's per-round reset."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            module.reset_parameters()
