"""Built-in PyTorch model builders: ``mlp``, ``cnn`` and ``linear``.

torch is imported inside each builder, so registering them costs nothing.
Image inputs are stored channels-last ``(H, W, C)``; ``cnn`` permutes to torch's layout.
"""

from __future__ import annotations

import math
from typing import Any

from tasks.errors import ConfigError
from tasks.registry import register_model

__all__ = ["cnn", "linear", "mlp", "output_units"]


def output_units(num_classes: int | None, meta: Any) -> int:
    """Classes for classification, else the size of one ``y`` row (1 for scalars)."""
    if num_classes:
        return int(num_classes)
    shape = (meta.arrays.get("y", {}).get("shape") if meta is not None else None) or []
    return int(math.prod(shape)) if shape else 1


def _activation(name: str) -> Any:
    import torch.nn as nn

    table = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
    if name not in table:
        raise ConfigError(
            f"model params: activation {name!r} is not supported; use one of {sorted(table)}"
        )
    return table[name]()


@register_model("mlp", framework="torch")
def mlp(
    input_shape: tuple[int, ...],
    num_classes: int | None,
    meta: Any = None,
    hidden: tuple[int, ...] = (128, 64),
    dropout: float = 0.1,
    activation: str = "relu",
) -> Any:
    """A multilayer perceptron over the flattened input."""
    import torch.nn as nn

    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for units in hidden:
        layers += [nn.Linear(width, int(units)), _activation(activation)]
        if dropout:
            layers.append(nn.Dropout(float(dropout)))
        width = int(units)
    layers.append(nn.Linear(width, output_units(num_classes, meta)))
    return nn.Sequential(*layers)


@register_model("linear", framework="torch")
def linear(input_shape: tuple[int, ...], num_classes: int | None, meta: Any = None) -> Any:
    """A single linear layer over the flattened input (logistic / linear regression)."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(input_shape), output_units(num_classes, meta))
    )


@register_model("cnn", framework="torch")
def cnn(
    input_shape: tuple[int, ...],
    num_classes: int | None,
    meta: Any = None,
    channels: tuple[int, ...] = (16, 32),
    kernel_size: int = 3,
    hidden: int = 64,
    dropout: float = 0.1,
) -> Any:
    """A small convolutional network for channels-last images ``(H, W)`` or ``(H, W, C)``."""
    import torch.nn as nn

    if len(input_shape) not in (2, 3):
        raise ConfigError(
            f"model builder 'cnn' needs image-shaped inputs (H, W[, C]), got {tuple(input_shape)}; "
            "use a loader that yields images (e.g. digits with params.as_image: true)"
        )
    height, width = int(input_shape[0]), int(input_shape[1])
    in_ch = int(input_shape[2]) if len(input_shape) == 3 else 1

    class ChannelsFirst(nn.Module):
        def forward(self, x: Any) -> Any:
            if x.dim() == 3:
                x = x.unsqueeze(-1)
            return x.permute(0, 3, 1, 2)

    layers: list[nn.Module] = [ChannelsFirst()]
    for out_ch in channels:
        layers += [
            nn.Conv2d(in_ch, int(out_ch), int(kernel_size), padding="same"),
            nn.ReLU(),
            nn.MaxPool2d(2) if min(height, width) >= 2 else nn.Identity(),
        ]
        if min(height, width) >= 2:
            height, width = height // 2, width // 2
        in_ch = int(out_ch)
    layers += [
        nn.Flatten(),
        nn.Linear(in_ch * height * width, int(hidden)),
        nn.ReLU(),
        nn.Dropout(float(dropout)),
        nn.Linear(int(hidden), output_units(num_classes, meta)),
    ]
    return nn.Sequential(*layers)
