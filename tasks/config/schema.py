"""Schemas of the four config sections, validated with pydantic.

Each model forbids unknown keys and fills in the documented defaults, so the resolved
config (``model_dump``) is complete and canonical: writing a default explicitly or
reordering keys yields the same resolved config, hence the same experiment.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_INPUTS",
    "SECTIONS",
    "TRAIN_IDENTITY_DEFAULTS",
    "DataConfig",
    "EarlyStoppingConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "SplitConfig",
    "TrainConfig",
    "input_names",
]

DEFAULT_INPUTS = ("x",)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# numpy's (and scikit-learn's random_state) range; a seed outside it fails mid-run.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


class SplitConfig(_Strict):
    """How PrepareData splits the loaded arrays."""

    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0)
    seed: Seed = 0

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        if self.val + self.test >= 1.0:
            raise ValueError("val + test must be below 1 so that rows are left for training")
        return self


class DataConfig(_Strict):
    """``configs/data/*.yaml``: which registered loader, its arguments, and the split."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    loader: str
    params: dict[str, Any] = Field(default_factory=dict)
    split: SplitConfig = Field(default_factory=SplitConfig)


class ModelConfig(_Strict):
    """``configs/model/*.yaml``: framework, registered builder and its arguments.

    ``objective`` names a registered objective that computes the loss (default: the train
    config's ``loss`` on ``y``); ``inputs`` names the data arrays passed positionally to the
    model for prediction (default: ``["x"]``).
    """

    name: str | None = Field(None, pattern=NAME_PATTERN)
    framework: Literal["torch", "tensorflow"]
    builder: str
    params: dict[str, Any] = Field(default_factory=dict)
    objective: str | None = None
    inputs: list[str] | None = Field(None, min_length=1)
    seed: Seed = 0


class OptimizerConfig(_Strict):
    """The optimizer and its hyperparameters."""

    # A registered optimizer (built-in: adam, adamw, sgd, rmsprop); checked when resolved.
    name: str = Field("adam", pattern=r"^[A-Za-z0-9_-]+$")
    lr: float = Field(0.001, gt=0.0)
    weight_decay: NonNegativeFloat = 0.0
    momentum: NonNegativeFloat = 0.0


class SchedulerConfig(BaseModel):
    """A registered learning-rate schedule: ``name``, ``warmup_epochs`` and its own keys
    (e.g. ``step_size``/``gamma`` of ``step``), completed from its defaults when resolved."""

    model_config = ConfigDict(extra="allow", strict=False, validate_default=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    warmup_epochs: NonNegativeInt = 0


class EarlyStoppingConfig(_Strict):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` and ``mode`` default to the train config's ``monitor`` and ``mode``.
    """

    monitor: str | None = None
    patience: PositiveInt = 5
    min_delta: NonNegativeFloat = 0.0
    mode: Literal["min", "max"] | None = None


class TrainConfig(_Strict):
    """``configs/train/*.yaml``: how Train fits the model."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    seed: Seed = 0
    checkpoint_every: PositiveInt = 1
    checkpoint_min_interval_s: NonNegativeFloat = 1.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    shuffle: bool = True
    scheduler: SchedulerConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    grad_clip: PositiveFloat | None = None
    accumulate: PositiveInt = 1
    precision: Literal["32", "bf16", "16-mixed"] = "32"
    deterministic: bool = False
    keep_checkpoints: PositiveInt = 1

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        # YAML reads `precision: 32` as an int; it means the same as "32".
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _fill_early_stopping(self) -> TrainConfig:
        if self.early_stopping is not None:
            if self.early_stopping.monitor is None:
                self.early_stopping.monitor = self.monitor
            if self.early_stopping.mode is None:
                self.early_stopping.mode = self.mode
        return self


# Train keys added after experiments existed: at these defaults they are left out of the
# identity, so the folders of older experiments keep their names.
TRAIN_IDENTITY_DEFAULTS: dict[str, Any] = {
    "scheduler": None,
    "early_stopping": None,
    "grad_clip": None,
    "accumulate": 1,
    "precision": "32",
    "deterministic": False,
    "keep_checkpoints": 1,
    "checkpoint_min_interval_s": 1.0,
}


class EvalConfig(_Strict):
    """``configs/eval/*.yaml``: which split and checkpoint Evaluate scores, with which metrics."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    split: Literal["train", "val", "test"] = "test"
    checkpoint: Literal["best", "last"] | PositiveInt = "best"
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "loss"], min_length=1)
    batch_size: PositiveInt = 256


SECTIONS: dict[str, type[_Strict]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


def input_names(model_config: dict[str, Any]) -> tuple[str, ...]:
    """The data arrays a resolved model config passes to the model (default: ``x``)."""
    return tuple(model_config.get("inputs") or DEFAULT_INPUTS)
