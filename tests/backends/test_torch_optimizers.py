"""The built-in torch optimizers: which Adam kernel they pick, and that it trains the same."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tasks.backends.base import make_optimizer  # noqa: E402
from tasks.backends.torch_optimizers import fused_kernel  # noqa: E402

ADAM = {"name": "adam", "lr": 1e-2, "weight_decay": 0.0, "momentum": 0.0}


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    generator = torch.Generator().manual_seed(7)
    for _ in range(steps):
        x = torch.randn(32, 5, generator=generator)
        y = torch.randint(0, 3, (32,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_on_cpu_uses_the_fused_kernel(name: str) -> None:
    optimizer = make_optimizer("torch", {**ADAM, "name": name}, params=_mlp(0).parameters())
    assert optimizer.param_groups[0]["fused"] is True


@pytest.mark.parametrize("name", ["sgd", "rmsprop"])
def test_other_optimizers_keep_the_default_kernel(name: str) -> None:
    optimizer = make_optimizer("torch", {**ADAM, "name": name}, params=_mlp(0).parameters())
    assert not optimizer.param_groups[0].get("fused")


def test_parameters_the_fused_kernel_does_not_take_get_the_default() -> None:
    complex_param = torch.zeros(3, dtype=torch.complex64, requires_grad=True)
    assert not fused_kernel([complex_param])
    assert not fused_kernel([torch.zeros(2, requires_grad=True), complex_param])
    assert not fused_kernel([])
    assert not fused_kernel([{"params": [torch.zeros(2, requires_grad=True)]}])
    assert not fused_kernel([torch.zeros(2, device="meta", requires_grad=True)])
    assert fused_kernel([torch.zeros(2, requires_grad=True), torch.zeros(1, dtype=torch.float64)])
    optimizer = make_optimizer("torch", ADAM, params=[complex_param])
    assert not optimizer.param_groups[0]["fused"]
    complex_param.grad = torch.ones(3, dtype=torch.complex64)
    optimizer.step()  # the default implementation takes complex parameters
    assert torch.all(complex_param.real < 0)


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_training_matches_the_default_implementation(name: str, weight_decay: float) -> None:
    """The same update as ``torch.optim.Adam``/``AdamW`` up to float32 rounding, over many
    steps (differences do not grow into a different model)."""
    cfg = {**ADAM, "name": name, "weight_decay": weight_decay}
    forge_model, plain_model = _mlp(1), _mlp(1)
    forge_opt = make_optimizer("torch", cfg, params=forge_model.parameters())
    plain_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    plain_opt = plain_cls(plain_model.parameters(), lr=cfg["lr"], weight_decay=weight_decay)
    assert forge_opt.param_groups[0]["fused"] and not plain_opt.param_groups[0]["fused"]
    _train(forge_model, forge_opt, 200)
    _train(plain_model, plain_opt, 200)
    for ours, theirs in zip(forge_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_fused_training_is_reproducible() -> None:
    """Bit for bit: the same config trains the same model every time."""
    models = [_mlp(2), _mlp(2)]
    for model in models:
        _train(model, make_optimizer("torch", ADAM, params=model.parameters()), 50)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_keeps_the_kernel_it_was_trained_with() -> None:
    """Resuming a checkpoint written with the default kernel continues with it."""
    model = _mlp(3)
    plain = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train(model, plain, 3)
    resumed = make_optimizer("torch", ADAM, params=model.parameters())
    resumed.load_state_dict(plain.state_dict())
    assert not resumed.param_groups[0]["fused"]


@pytest.mark.parametrize(
    ("name", "kernel"), [("adam", "fused"), ("adamw", "fused"), ("sgd", "default")]
)
def test_the_session_names_the_kernel_it_runs(name: str, kernel: str) -> None:
    """What Train records in run.json's ``optimizer_kernel``."""
    from tasks.backends import get_backend
    from tasks.backends.base import TrainSettings
    from tasks.data.h5store import DataMeta

    meta = DataMeta(
        arrays={"x": {"shape": [5], "dtype": "float32"}, "y": {"shape": [], "dtype": "int64"}},
        num_classes=3,
        task="classification",
        rows={"train": 4},
    )
    settings = TrainSettings(
        epochs=1,
        batch_size=2,
        optimizer={**ADAM, "name": name},
        loss="cross_entropy",
        seed=0,
        device="cpu",
        objective=None,
        meta=meta,
    )
    assert get_backend("torch").session(_mlp(0), settings).optimizer_kernel() == kernel
