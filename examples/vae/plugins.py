"""A variational autoencoder on digits, unsupervised, in both frameworks.

Load it with ``FORGE_PLUGINS=examples.vae.plugins`` (the repository root on ``PYTHONPATH``).
It registers:

* the loader ``digits_unlabelled``: the 8×8 digits as ``{"x": ...}`` only, no labels;
* the builder ``vae`` for ``torch`` and ``tensorflow``: an MLP encoder to a Gaussian latent
  (``latent`` dimensions) and an MLP decoder; the model returns a dict of outputs
  (``recon``, ``logits``, ``mean``, ``logvar``) and has ``decode(z)`` for sampling;
* the objective ``vae_elbo`` for both frameworks: the negative ELBO as ``loss``, plus
  ``elbo``, ``recon`` (reconstruction negative log-likelihood) and ``kl`` to log;
* the metric ``recon_error``: mean squared error of the reconstruction against ``x``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks import register_dataset, register_metric, register_model, register_objective


@register_dataset("digits_unlabelled")
def digits_unlabelled() -> dict[str, Any]:
    """scikit-learn's 8×8 digits scaled to [0, 1], without their labels (``x`` only)."""
    from sklearn.datasets import load_digits

    return {"x": (load_digits().data / 16.0).astype(np.float32)}


@register_model("vae", framework="torch")
def vae_torch(input_shape: tuple[int, ...], latent: int = 4, hidden: int = 128) -> Any:
    """A torch VAE: ``forward(x)`` samples the latent in training mode, uses its mean otherwise."""
    import torch
    from torch import nn

    size = int(np.prod(input_shape))

    class VAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(size, hidden), nn.ReLU())
            self.stats = nn.Linear(hidden, 2 * latent)
            self.decoder = nn.Sequential(
                nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, size)
            )

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            """Images (probabilities in [0, 1]) for latent codes ``z``."""
            return torch.sigmoid(self.decoder(z)).reshape(-1, *input_shape)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            mean, logvar = self.stats(self.encoder(x.flatten(1))).chunk(2, dim=-1)
            z = mean
            if self.training:
                z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            logits = self.decoder(z)
            recon = torch.sigmoid(logits).reshape(x.shape)
            return {"recon": recon, "logits": logits, "mean": mean, "logvar": logvar}

    return VAE()


@register_model("vae", framework="tensorflow")
def vae_tf(input_shape: tuple[int, ...], latent: int = 4, hidden: int = 128) -> Any:
    """The same VAE in Keras; the latent noise comes from a seeded ``SeedGenerator``."""
    import keras
    from keras import layers, ops

    size = int(np.prod(input_shape))

    class VAE(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = keras.Sequential(
                [
                    keras.Input((size,)),
                    layers.Dense(hidden, activation="relu"),
                    layers.Dense(2 * latent),
                ]
            )
            self.decoder = keras.Sequential(
                [
                    keras.Input((latent,)),
                    layers.Dense(hidden, activation="relu"),
                    layers.Dense(size),
                ]
            )
            self.noise = keras.random.SeedGenerator(0)

        def decode(self, z: Any) -> Any:
            """Images (probabilities in [0, 1]) for latent codes ``z``."""
            return ops.reshape(ops.sigmoid(self.decoder(z)), (-1, *input_shape))

        def call(self, x: Any, training: bool = False) -> dict[str, Any]:
            flat = ops.reshape(x, (-1, size))
            mean, logvar = ops.split(self.encoder(flat), 2, axis=-1)
            z = mean
            if training:
                eps = keras.random.normal(ops.shape(mean), seed=self.noise)
                z = mean + ops.exp(0.5 * logvar) * eps
            logits = self.decoder(z)
            recon = ops.reshape(ops.sigmoid(logits), ops.shape(x))
            return {"recon": recon, "logits": logits, "mean": mean, "logvar": logvar}

    return VAE()


@register_objective("vae_elbo", framework="torch")
def vae_elbo_torch(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Negative ELBO (Bernoulli decoder, standard normal prior), per example in nats."""
    import torch.nn.functional as F

    out = model(batch["x"])
    x = batch["x"].flatten(1)
    recon = F.binary_cross_entropy_with_logits(out["logits"], x, reduction="none").sum(-1)
    logvar, mean = out["logvar"], out["mean"]
    kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(-1)
    elbo = (-recon - kl).mean()
    return {"loss": -elbo, "elbo": elbo, "recon": recon.mean(), "kl": kl.mean()}


@register_objective("vae_elbo", framework="tensorflow")
def vae_elbo_tf(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """The torch objective's twin: same terms, same names."""
    from keras import ops

    out = model(batch["x"])
    logits = out["logits"]
    x = ops.reshape(batch["x"], ops.shape(logits))
    # Binary cross-entropy with logits, written out: max(l, 0) - l * x + log(1 + exp(-|l|)).
    bce = ops.relu(logits) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))
    recon = ops.sum(bce, axis=-1)
    logvar, mean = out["logvar"], out["mean"]
    kl = -0.5 * ops.sum(1 + logvar - ops.square(mean) - ops.exp(logvar), axis=-1)
    elbo = ops.mean(-recon - kl)
    return {"loss": -elbo, "elbo": elbo, "recon": ops.mean(recon), "kl": ops.mean(kl)}


@register_metric("recon_error")
def recon_error(outputs: Any, batch: dict[str, np.ndarray]) -> float:
    """Mean squared error of the reconstruction (output ``recon``) against ``x``."""
    recon = np.asarray(outputs["recon"]).reshape(batch["x"].shape)
    return float(np.mean((recon - batch["x"]) ** 2))
