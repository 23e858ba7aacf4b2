"""Seeding torch: the same random streams as ``torch.manual_seed``, and every accelerator
that can take the seed still gets it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tasks.backends._torch import manual_seed  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 + 5, -3])
def test_seeding_gives_the_streams_torch_manual_seed_gives(seed: int) -> None:
    torch.manual_seed(seed)
    expected = (torch.rand(64), torch.randn(8, 8), torch.randint(0, 100, (16,)))
    torch.manual_seed(seed + 1)  # a different state in between
    manual_seed(seed)
    got = (torch.rand(64), torch.randn(8, 8), torch.randint(0, 100, (16,)))
    for want, have in zip(expected, got, strict=True):
        assert torch.equal(want, have)


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1])
def test_a_seed_out_of_range_is_refused_as_torch_refuses_it(seed: int) -> None:
    with pytest.raises(Exception) as torch_error:
        torch.manual_seed(seed)
    with pytest.raises(torch_error.type):
        manual_seed(seed)


@pytest.mark.parametrize("accelerator", ["cuda", "xpu", "mtia"])
def test_an_available_accelerator_is_seeded_through_torch_manual_seed(
    monkeypatch: pytest.MonkeyPatch, accelerator: str
) -> None:
    seen: list[int] = []
    real = torch.manual_seed

    def recording(seed: int) -> object:
        seen.append(seed)
        return real(seed)

    monkeypatch.setattr(getattr(torch, accelerator), "is_available", lambda: True)
    monkeypatch.setattr(torch, "manual_seed", recording)
    manual_seed(11)
    assert seen == [11]


def test_without_accelerators_only_the_cpu_generator_is_seeded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    calls: list[int] = []
    monkeypatch.setattr(torch, "manual_seed", lambda seed: calls.append(seed))
    manual_seed(11)
    assert calls == []
    assert torch.initial_seed() == 11
