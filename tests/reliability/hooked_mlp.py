"""The built-in torch MLP with a hook run before each forward pass: what the test plugin
models (``disk_fill_plugins``, ``pause_plugins``) are made of."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.registry import get_entry


def torch_mlp_calling(
    hook: Callable[[], None],
    input_shape: tuple[int, ...],
    num_classes: int,
    meta: Any = None,
    *,
    training_only: bool = False,
) -> Any:
    """The built-in MLP at its default size, calling ``hook`` before each forward pass
    (with ``training_only``, only before those that train: training mode, gradients on)."""
    import torch
    from torch import nn

    inner = get_entry("model", "mlp", "torch").func(input_shape, num_classes, meta)

    class Hooked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = inner

        def forward(self, x: Any) -> Any:
            if not training_only or (self.training and torch.is_grad_enabled()):
                hook()
            return self.net(x)

    return Hooked()
