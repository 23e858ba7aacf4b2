"""Built-in Keras optimizers: ``adam``, ``adamw``, ``sgd`` and ``rmsprop``, with torch's
defaults and torch's (coupled, L2) ``weight_decay``, so one train config means the same in
both frameworks.

Keras is imported inside each factory, so registering them costs nothing.
"""

from __future__ import annotations

from typing import Any

from tasks.registry import register_optimizer

__all__ = ["adam", "adamw", "rmsprop", "sgd"]


def _build(name: str, lr: float, weight_decay: float, **kwargs: Any) -> Any:
    import keras

    from tasks.backends._tensorflow import coupled_l2

    cls = getattr(keras.optimizers, name)
    if weight_decay:
        return coupled_l2(cls)(l2=weight_decay, learning_rate=lr, **kwargs)
    return cls(learning_rate=lr, **kwargs)


@register_optimizer("adam", framework="tensorflow")
def adam(lr: float, weight_decay: float = 0.0) -> Any:
    """``keras.optimizers.Adam`` (epsilon 1e-8 as torch)."""
    return _build("Adam", lr, weight_decay, epsilon=1e-8)


@register_optimizer("adamw", framework="tensorflow")
def adamw(lr: float, weight_decay: float = 0.0) -> Any:
    """``keras.optimizers.AdamW`` (decoupled weight decay, epsilon 1e-8 as torch)."""
    import keras

    return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay, epsilon=1e-8)


@register_optimizer("sgd", framework="tensorflow")
def sgd(lr: float, weight_decay: float = 0.0, momentum: float = 0.0) -> Any:
    """``keras.optimizers.SGD``."""
    return _build("SGD", lr, weight_decay, momentum=momentum)


@register_optimizer("rmsprop", framework="tensorflow")
def rmsprop(lr: float, weight_decay: float = 0.0, momentum: float = 0.0) -> Any:
    """``keras.optimizers.RMSprop`` (rho 0.99, epsilon 1e-8 as torch)."""
    return _build("RMSprop", lr, weight_decay, rho=0.99, momentum=momentum, epsilon=1e-8)
