"""The torch backend's grouped accuracies equal each batch's own accuracy, bit for bit.

Training and validation accuracy are computed for many batches at once (one argmax and
comparison per group instead of five operations per batch). Whatever the batch sizes,
class counts, extra dimensions, label dtypes and group boundaries, every batch's value must
be exactly ``(logits.argmax(-1) == y).float().mean()``, and the logits held waiting must
stay bounded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.backends._torch import _Accuracies, _BatchAccuracy


def eager(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(dim=-1) == y).float().mean())


@st.composite
def batches(draw: Any) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    classes = draw(st.integers(1, 6))
    extra = draw(st.sampled_from([(), (3,), (2, 2)]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
    label_dtype = draw(st.sampled_from([torch.int64, torch.int32, torch.float32]))
    seed = draw(st.integers(0, 2**16))
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=12))
    group = draw(st.integers(1, 8))
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        # Few distinct values, so argmax often meets ties, as low-precision logits do.
        logits = torch.randint(0, 3, (n, *extra, classes), generator=gen).to(dtype)
        y = torch.randint(0, classes, (n, *extra), generator=gen).to(label_dtype)
        out.append((logits, y))
    return out, group


@settings(max_examples=150, deadline=None)
@given(batches())
def test_grouped_values_equal_each_batchs_own_accuracy(
    case: tuple[list[tuple[torch.Tensor, torch.Tensor]], int],
) -> None:
    data, group = case
    accuracies = _Accuracies()
    accuracies.GROUP = group
    held = [accuracies.add(logits, y) for logits, y in data]
    accuracies.resolve()
    for value, (logits, y) in zip(held, data, strict=True):
        assert isinstance(value, _BatchAccuracy)
        assert float(value) == eager(logits, y)
        assert value.logits is None and value.y is None  # nothing is held once resolved


def test_a_group_is_resolved_once_full_and_waiting_logits_stay_bounded() -> None:
    accuracies = _Accuracies()
    small = [accuracies.add(torch.randn(8, 3), torch.randint(0, 3, (8,))) for _ in range(63)]
    assert all(b.means is None for b in small)  # still waiting: one computation for all
    last = accuracies.add(torch.randn(8, 3), torch.randint(0, 3, (8,)))
    assert isinstance(last, _BatchAccuracy)
    assert all(b.means is not None for b in [*small, last])  # the 64th resolved the group
    # Logits over the byte bound are resolved at once instead of being held.
    big = accuracies.add(torch.randn(1024, 1100), torch.randint(0, 1100, (1024,)))
    assert isinstance(big, _BatchAccuracy) and big.means is not None


def test_a_value_read_early_is_computed_alone_and_kept_by_its_group() -> None:
    accuracies = _Accuracies()
    data = [(torch.randn(n, 4), torch.randint(0, 4, (n,))) for n in (5, 9, 3)]
    held = [accuracies.add(logits, y) for logits, y in data]
    early = float(held[1])  # read before its group is full
    accuracies.resolve()
    assert [float(b) for b in held] == [eager(logits, y) for logits, y in data]
    assert float(held[1]) == early


def test_labels_shaped_otherwise_are_computed_at_once_as_before() -> None:
    accuracies = _Accuracies()
    logits, y = torch.randn(5, 3), torch.randint(0, 3, (5, 1))  # broadcasts to 5 x 5
    value = accuracies.add(logits, y)
    assert isinstance(value, torch.Tensor)
    assert float(value) == eager(logits, y)


def test_a_session_reports_the_same_epoch_accuracy_as_the_hits_of_its_outputs() -> None:
    """Through a real session: the epoch's accuracy from to_numpy is each batch's own."""
    from tasks.backends import get_backend
    from tasks.backends.base import TrainSettings
    from tasks.data.h5store import DataMeta

    backend = get_backend("torch")
    model = torch.nn.Linear(4, 3)
    meta = DataMeta(
        arrays={"x": {"shape": [4], "dtype": "float32"}, "y": {"shape": [], "dtype": "int64"}},
        num_classes=3,
        task="classification",
        rows={"train": 37},
    )
    session = backend.session(
        model,
        TrainSettings(
            epochs=1,
            batch_size=10,
            optimizer={"name": "sgd", "lr": 0.0, "weight_decay": 0.0, "momentum": 0.0},
            loss="cross_entropy",
            seed=0,
            device="cpu",
            objective=None,
            meta=meta,
        ),
    )
    rng = np.random.default_rng(0)
    values, expected = [], []
    with session.mode(False):
        for n in (10, 10, 10, 7):
            x = rng.normal(size=(n, 4)).astype(np.float32)
            y = rng.integers(0, 3, size=n)
            values.append(session.eval_step({"x": x, "y": y})["accuracy"])
            with torch.no_grad():
                expected.append(eager(model(torch.from_numpy(x)), torch.from_numpy(y)))
    assert session.to_numpy(values).tolist() == pytest.approx(expected, abs=0)
