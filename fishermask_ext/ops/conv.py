"""Conv2d per-sample weight gradients in plain torch, and the one decoding of a conv call's
geometry (kernel_size, stride, padding, dilation, groups) on the Python side, as
csrc/conv_geometry.h is on the native one. Used by the twins (reference.py) and by step A's
conv layers called more than once per sample (nn/fisher.py)."""
import torch


def weight_columns(in_channels, kernel_size, groups):
    """K = Cin/groups·kh·kw: the columns of a conv weight viewed as [O, K]."""
    return in_channels // groups * kernel_size[0] * kernel_size[1]


def patches(x, kernel_size, stride, padding, dilation, groups):
    """x: [n, Cin, H, W] -> [n, groups, K, L]: the input patches of every output position,
    group by group; row k of a group is column k of the group's weight.view(O, -1)."""
    unf = torch.nn.functional.unfold(x, kernel_size, dilation=dilation, padding=padding,
                                     stride=stride)                       # [n, Cin·kh·kw, L]
    return unf.unflatten(1, (groups, -1))


def conv2d_sample_grads(x, delta, kernel_size, stride, padding, dilation, groups):
    """x: [n, Cin, H, W]; delta: [C, n, O, Ho, Wo] -> [C, n, O, Cin/groups·kh·kw]: every
    per-sample, per-class Conv2d weight gradient, in weight.view(O, -1) order."""
    unf = patches(x, kernel_size, stride, padding, dilation, groups)           # [n, G, K, L]
    d = delta.flatten(3).unflatten(2, (groups, -1))                             # [C, n, G, Og, L]
    return torch.einsum("cngol,ngkl->cngok", d, unf).flatten(2, 3)


def masked_conv2d_grad(x, delta, index, kernel_size, stride, padding, dilation, groups):
    """x: [n, Cin, H, W]; delta: [C, n, O, Ho, Wo]; index: [m] flat positions of the
    [O, Cin/groups, kh, kw] weight -> [n, C, m]: the masked entries of conv2d_sample_grads,
    without forming the others."""
    unf = patches(x, kernel_size, stride, padding, dilation, groups)           # [n, G, K, L]
    K, Og = unf.shape[2], delta.shape[2] // groups
    o, k = index // K, index % K
    return torch.einsum("cnml,nml->ncm", delta.flatten(3)[:, :, o], unf[:, o // Og, k])
