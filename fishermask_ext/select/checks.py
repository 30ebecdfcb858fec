"""Input checks of the selection layer: embeddings, Fisher matrices, labeled masks."""
import torch

from .rows import as_rows

__all__ = ["check_embeddings", "check_fisher", "check_mask"]


def check_embeddings(x, name, allow_empty=False):
    """Rows over `x` after the type and shape checks of an [N, C, D] embedding pool. (NaN/Inf
    are found for free by the Fisher diagonal, select.fisher.checked_sums, where it is formed.)"""
    rows = as_rows(x, name)
    if rows.tensor is not None and rows.tensor.requires_grad:
        raise ValueError(f"{name} requires grad: selection is not differentiable and reads "
                         f"the values only; pass {name}.detach()")
    shape, dtype = rows.shape, rows.dtype
    if len(shape) != 3:
        raise ValueError(f"{name} must have shape [N, C, D] (N points, C classes, D masked "
                         f"parameters), got shape {shape}")
    if dtype in (torch.float16, torch.bfloat16):
        raise TypeError(f"{name} is {dtype}: selection reads float32 or float64 embeddings "
                        f"(float32 is stored as is and computed in float64); convert with "
                        f"{name}.float()")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {dtype}; "
                        f"convert with .float() or .double()")
    if not allow_empty and shape[0] == 0:
        raise ValueError(f"{name} is empty (N = 0): there is nothing to select from")
    if shape[1] == 0 or shape[2] == 0:
        raise ValueError(f"{name} has C = {shape[1]} and D = {shape[2]}; both must be >= 1")
    return rows


def check_fisher(F, name, D, device):
    """F as an exactly symmetric float64 [D, D] tensor on `device`, or a clear error."""
    if not isinstance(F, torch.Tensor) or tuple(F.shape) != (D, D):
        shape = tuple(F.shape) if isinstance(F, torch.Tensor) else type(F).__name__
        raise ValueError(f"{name} must be a [D, D] = [{D}, {D}] tensor, got {shape}")
    if F.device != device:
        raise ValueError(f"{name} is on {F.device} but the embeddings are on {device}; "
                         f"move it with .to({str(device)!r})")
    if F.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {F.dtype}")
    eps = torch.finfo(F.dtype).eps          # of the caller's dtype: the rounding F was formed in
    F = F.to(torch.float64)
    if not bool(torch.isfinite(F).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    tol = 1e-6 * max(float(F.abs().max()), 1e-300)
    if float((F - F.T).abs().max()) > tol:
        raise ValueError(f"{name} is not symmetric (max |F - Fᵀ| = "
                         f"{float((F - F.T).abs().max()):.3g}); pass (F + F.T) / 2")
    F = (F + F.T) / 2        # exactly symmetric: the greedy loop relies on it
    check_psd(F, name, eps)
    return F


PSD_SLACK = 10     # c of the tolerance c·D·eps·max|F| on F's smallest eigenvalue


def check_psd(F, name, eps):
    """ValueError unless the symmetric F has no eigenvalue below -PSD_SLACK·D·eps·max|F|: a
    Fisher (a mean of XᵀX) is positive semi-definite, up to the rounding of the sums that
    formed it (D·eps·max|F| bounds it; eps of the dtype they ran in). The test is a Cholesky
    factorisation of F + tol·I (D³/3 flops, far less than the selection); the eigenvalue is
    computed only for the message."""
    scale = float(F.abs().max())
    if scale == 0:
        return
    tol = PSD_SLACK * F.shape[0] * eps * scale
    eye = torch.eye(F.shape[0], dtype=F.dtype, device=F.device)
    if int(torch.linalg.cholesky_ex(F + tol * eye).info) != 0:
        low = float(torch.linalg.eigvalsh(F)[0])
        raise ValueError(f"{name} must be positive semi-definite (a mean of XᵀX, as "
                         f"fm.fisher_matrix forms it): its smallest eigenvalue is {low:.3g}, "
                         f"below the rounding tolerance -{tol:.3g}")


def check_mask(mask, N, device, name="labeled_mask"):
    """An [N] bool tensor on `device` from a tensor or numpy array, or a clear error."""
    if not isinstance(mask, torch.Tensor):
        try:
            mask = torch.as_tensor(mask)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be an [N] bool tensor or array, got "
                            f"{type(mask).__name__}") from None
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be bool (True = labeled), got {mask.dtype}; pass "
                        f"an index list through a mask: m = torch.zeros(N, dtype=torch.bool); "
                        f"m[idx] = True")
    if tuple(mask.shape) != (N,):
        raise ValueError(f"{name} must have shape [N] = [{N}] (one flag per pool point), got "
                         f"{tuple(mask.shape)}")
    return mask.to(device)
