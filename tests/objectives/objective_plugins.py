"""Test plugins: a three-array dataset and a two-input model in both frameworks.

Loaded by the tests through ``FORGE_PLUGINS=objective_plugins`` with this folder on
``PYTHONPATH``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks import register_dataset, register_model


@register_dataset("digits_with_feature")
def digits_with_feature() -> dict[str, Any]:
    """Digits as images, a scalar feature per image (its mean intensity) and the label."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    image = (bunch.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    feature = image.reshape(len(image), -1).mean(axis=1, keepdims=True)
    return {"image": image, "feature": feature, "y": bunch.target.astype(np.int64)}


@register_model("two_input", framework="torch")
def two_input_torch(input_shape: tuple[int, ...], num_classes: int, meta: Any) -> Any:
    """``forward(image, feature) -> (logits, probabilities)``: a model with tuple outputs."""
    from torch import nn

    size = int(np.prod(input_shape)) + int(np.prod(meta.arrays["feature"]["shape"]))

    class TwoInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(size, 64), nn.ReLU(), nn.Linear(64, num_classes))

        def forward(self, image: Any, feature: Any) -> Any:
            import torch

            logits = self.net(torch.cat([image.flatten(1), feature], dim=1))
            return logits, torch.softmax(logits, dim=-1)

    return TwoInput()


@register_model("two_input", framework="tensorflow")
def two_input_tf(input_shape: tuple[int, ...], num_classes: int, meta: Any) -> Any:
    """A functional Keras model with the inputs ``[image, feature]``."""
    import keras
    from keras import layers

    image = keras.Input(tuple(input_shape), name="image")
    feature = keras.Input(tuple(meta.arrays["feature"]["shape"]), name="feature")
    joined = layers.Concatenate()([layers.Flatten()(image), feature])
    hidden = layers.Dense(64, activation="relu")(joined)
    return keras.Model([image, feature], layers.Dense(num_classes)(hidden))


@register_model("fixed_batch", framework="torch")
def fixed_batch(input_shape: tuple[int, ...], num_classes: int) -> Any:
    """Trains fine, but its ``len(x)`` fixes the batch size, so the code-free export fails."""
    from torch import nn

    class FixedBatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(int(np.prod(input_shape)), num_classes)

        def forward(self, x: Any) -> Any:
            return {"logits": self.net(x.reshape(len(x), -1))}

    return FixedBatch()
