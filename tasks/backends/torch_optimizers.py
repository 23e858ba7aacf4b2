"""Built-in PyTorch optimizers: ``adam``, ``adamw``, ``sgd`` and ``rmsprop``.

torch is imported inside each factory, so registering them costs nothing.
"""

from __future__ import annotations

from typing import Any

from tasks.registry import register_optimizer

__all__ = ["adam", "adamw", "rmsprop", "sgd"]


@register_optimizer("adam", framework="torch")
def adam(params: Any, lr: float, weight_decay: float = 0.0) -> Any:
    """``torch.optim.Adam`` (``weight_decay`` is an L2 term added to the gradient)."""
    import torch

    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@register_optimizer("adamw", framework="torch")
def adamw(params: Any, lr: float, weight_decay: float = 0.0) -> Any:
    """``torch.optim.AdamW`` (decoupled weight decay)."""
    import torch

    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


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
