"""The torch session's best-weights snapshot: taken when asked, written later, and read
back by the same loader as ``save_model``'s file, tied weights included."""

from __future__ import annotations

from pathlib import Path

import torch

from tasks.backends._torch import TorchBackend, _TorchSession
from tasks.backends.base import TrainSettings


class Tied(torch.nn.Module):
    """An encoder and a decoder sharing one weight matrix (as language models tie them)."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = torch.nn.Linear(4, 4, bias=False)
        self.decode = torch.nn.Linear(4, 4, bias=False)
        self.decode.weight = self.encode.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _session(model: torch.nn.Module) -> _TorchSession:
    settings = TrainSettings(
        epochs=1,
        batch_size=2,
        optimizer={"name": "sgd", "lr": 0.1},
        loss="mse",
        seed=0,
        device="cpu",
        objective=None,
        meta=None,  # type: ignore[arg-type]
    )
    return _TorchSession(model, settings)


def test_the_snapshot_keeps_the_weights_of_the_moment_it_was_taken(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Tied()
    session = _session(model)
    write = session.weights_writer()
    assert write is not None
    expected = model.encode.weight.detach().clone()
    with torch.no_grad():
        model.encode.weight.add_(1.0)  # training goes on before the file is written
    write(tmp_path / "best.safetensors")
    fresh = Tied()
    TorchBackend().load_weights(fresh, tmp_path / "best.safetensors")
    assert torch.equal(fresh.encode.weight, expected)
    assert fresh.decode.weight is fresh.encode.weight  # still tied after loading
    # The control: the live model has moved on, so a write at write time would differ.
    assert not torch.equal(model.encode.weight, expected)


def test_the_snapshot_file_holds_what_save_model_holds(tmp_path: Path) -> None:
    from safetensors import safe_open

    torch.manual_seed(0)
    model = Tied()
    snapshot = _session(model).weights_writer()
    assert snapshot is not None
    snapshot(tmp_path / "snap.safetensors")
    TorchBackend().save_weights(model, tmp_path / "direct.safetensors")
    with (
        safe_open(tmp_path / "snap.safetensors", "pt") as a,
        safe_open(tmp_path / "direct.safetensors", "pt") as b,
    ):
        assert sorted(a.keys()) == sorted(b.keys())
        assert a.metadata() == b.metadata()
        for key in a.keys():
            assert torch.equal(a.get_tensor(key), b.get_tensor(key))
