"""Built-in PyTorch optimizers: ``adam``, ``adamw``, ``sgd`` and ``rmsprop``.

torch is imported inside each factory, so registering them costs nothing.

``adam`` and ``adamw`` use torch's fused kernel when every parameter allows it (floating
point, on the CPU or a CUDA device): one kernel updates every tensor, where the default
implementation runs about six small operations per parameter tensor in Python. For a
small model the optimizer step is then several times cheaper (``benchmarks/``: the
sweep of small experiments). The update is the same formula; its float32 rounding differs
from the default implementation's in the last bits (after 200 steps of a small MLP the
weights agree within 1e-4, relative), and a run is as reproducible as before: the same
config, machine and versions train the same weights. A checkpoint keeps the choice it was
trained with, so a resumed run continues with the same kernel, and ``run.json`` records
which one ran (``optimizer_kernel``).
"""

from __future__ import annotations

from typing import Any

from tasks.registry import register_optimizer

__all__ = ["FUSED_DEVICES", "adam", "adamw", "fused_kernel", "rmsprop", "sgd"]


FUSED_DEVICES = ("cpu", "cuda")


def fused_kernel(params: list[Any]) -> bool:
    """Whether torch's fused Adam kernel takes ``params``: real floating point tensors,
    all on the CPU or all on CUDA devices (the kernel runs per device type)."""
    import torch

    if not params or not all(isinstance(p, torch.Tensor) for p in params):
        return False  # none, or parameter groups (dicts): the default implementation
    devices = {p.device.type for p in params}
    return (
        len(devices) == 1
        and devices <= set(FUSED_DEVICES)
        and all(torch.is_floating_point(p) for p in params)
    )


@register_optimizer("adam", framework="torch")
def adam(params: Any, lr: float, weight_decay: float = 0.0) -> Any:
    """``torch.optim.Adam`` (``weight_decay`` is an L2 term added to the gradient), fused
    where the parameters allow it."""
    import torch

    params = list(params)
    return torch.optim.Adam(
        params, lr=lr, weight_decay=weight_decay, fused=fused_kernel(params) or None
    )


@register_optimizer("adamw", framework="torch")
def adamw(params: Any, lr: float, weight_decay: float = 0.0) -> Any:
    """``torch.optim.AdamW`` (decoupled weight decay), fused where the parameters allow it."""
    import torch

    params = list(params)
    return torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, fused=fused_kernel(params) or None
    )


@register_optimizer("sgd", framework="torch")
def sgd(params: Any, lr: float, weight_decay: float = 0.0, momentum: float = 0.0) -> Any:
    """``torch.optim.SGD``."""
    import torch

    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


@register_optimizer("rmsprop", framework="torch")
def rmsprop(params: Any, lr: float, weight_decay: float = 0.0, momentum: float = 0.0) -> Any:
    """``torch.optim.RMSprop``."""
    import torch

    return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
