"""Built-in TensorFlow/Keras model builders: ``mlp``, ``cnn`` and ``linear``.

Keras is imported inside each builder, so registering them (at registry load) costs
nothing and never imports TensorFlow. Parameters and defaults are exactly those of the
torch twins in :mod:`tasks.backends.torch_models`, so a model config differs between the
frameworks only in ``framework:``. Image inputs are stored channels-last ``(H, W, C)``,
which is Keras' own layout.
"""

from __future__ import annotations

from typing import Any

from tasks.backends.torch_models import output_units
from tasks.errors import ConfigError
from tasks.registry import register_model

__all__ = ["cnn", "linear", "mlp"]

_ACTIVATIONS = ("gelu", "relu", "sigmoid", "tanh")


def _activation(name: str) -> str:
    if name not in _ACTIVATIONS:
        raise ConfigError(
            f"model params: activation {name!r} is not supported; use one of {list(_ACTIVATIONS)}"
        )
    return name


@register_model("mlp", framework="tensorflow")
def mlp(
    input_shape: tuple[int, ...],
    num_classes: int | None,
    meta: Any = None,
    hidden: tuple[int, ...] = (128, 64),
    dropout: float = 0.1,
    activation: str = "relu",
) -> Any:
    """A multilayer perceptron over the flattened input."""
    import keras

    act = _activation(activation)
    layers: list[Any] = [
        keras.Input(shape=tuple(int(d) for d in input_shape)),
        keras.layers.Flatten(),
    ]
    for units in hidden:
        layers.append(keras.layers.Dense(int(units), activation=act))
        if dropout:
            layers.append(keras.layers.Dropout(float(dropout)))
    layers.append(keras.layers.Dense(output_units(num_classes, meta)))
    return keras.Sequential(layers, name="mlp")


@register_model("linear", framework="tensorflow")
def linear(input_shape: tuple[int, ...], num_classes: int | None, meta: Any = None) -> Any:
    """A single linear layer over the flattened input (logistic / linear regression)."""
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=tuple(int(d) for d in input_shape)),
            keras.layers.Flatten(),
            keras.layers.Dense(output_units(num_classes, meta)),
        ],
        name="linear",
    )


@register_model("cnn", framework="tensorflow")
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
    import keras

    if len(input_shape) not in (2, 3):
        raise ConfigError(
            f"model builder 'cnn' needs image-shaped inputs (H, W[, C]), got {tuple(input_shape)}; "
            "use a loader that yields images (e.g. digits with params.as_image: true)"
        )
    height, width = int(input_shape[0]), int(input_shape[1])
    layers: list[Any] = [keras.Input(shape=tuple(int(d) for d in input_shape))]
    if len(input_shape) == 2:
        layers.append(keras.layers.Reshape((height, width, 1)))
    for out_ch in channels:
        layers.append(
            keras.layers.Conv2D(int(out_ch), int(kernel_size), padding="same", activation="relu")
        )
        if min(height, width) >= 2:
            layers.append(keras.layers.MaxPooling2D(2))
            height, width = height // 2, width // 2
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(int(hidden), activation="relu"),
        keras.layers.Dropout(float(dropout)),
        keras.layers.Dense(output_units(num_classes, meta)),
    ]
    return keras.Sequential(layers, name="cnn")
