"""Train-loop overhead, torch: Forge's training session vs a hand-written PyTorch loop.

Model: MLP 64-256-256-2 (Forge's ``mlp`` builder, no dropout), 20,000 rows, batch 128,
3 epochs, Adam, one intra-op thread. Forge's side opens a :class:`BatchStream` on a real
``data.h5`` (written by :func:`write_splits`) and runs ``TrainSession.fit``; the baseline
is the minimal loop over the same rows already in memory as tensors, with the Adam kernel
Forge's ``adam`` picks (:func:`~benchmarks._train_loop.hand_adam`): the row measures the
loop, not the optimizer. Both start from the
same initial weights; model construction is outside the timed region on both sides.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks._data import make_arrays, write_data_h5
from benchmarks._train_loop import BATCH, PARAMS, ROWS, forge_fit_seconds, hand_adam, settings_for
from benchmarks.harness import Target, interleaved, row, timed

__all__ = ["run"]

TARGET = Target("<=", 1.03)


def run(quick: bool) -> list[dict[str, Any]]:
    """Time both loops interleaved; one row."""
    import torch
    import torch.nn.functional as F

    from tasks.backends import get_backend
    from tasks.registry import get_entry

    torch.set_num_threads(1)
    epochs, repeats = (1, 3) if quick else (3, 11)
    backend = get_backend("torch")
    entry = get_entry("model", "mlp", "torch")
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        path = Path(tmp) / "data.h5"
        arrays = make_arrays(ROWS)
        meta = write_data_h5(path, arrays)
        initial = {
            k: v.clone() for k, v in backend.build(entry, PARAMS, meta, seed=0).state_dict().items()
        }
        settings = settings_for(meta, epochs)
        x_all = torch.from_numpy(arrays["x"])
        y_all = torch.from_numpy(arrays["y"])

        def fresh() -> Any:
            model = backend.build(entry, PARAMS, meta, seed=0)
            model.load_state_dict(initial)
            return model

        def forge_side() -> float:
            return forge_fit_seconds(backend, fresh(), path, settings)

        def hand_written() -> float:
            model = fresh()

            def work() -> None:
                torch.manual_seed(0)
                optimizer = hand_adam(model.parameters())
                model.train()
                n = len(x_all)
                for _ in range(epochs):
                    order = torch.randperm(n)
                    for start in range(0, n, BATCH):
                        take = order[start : start + BATCH]
                        loss = F.cross_entropy(model(x_all[take]), y_all[take])
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()

            return timed(work)

        cand, base = interleaved(forge_side, hand_written, repeats)
    return [
        row(
            "train loop, torch",
            f"s / {epochs} epochs",
            cand,
            base,
            TARGET,
            note=f"MLP 64-256-256-2, {ROWS} rows, batch {BATCH}, 1 thread; Forge side includes "
            "opening data.h5",
        )
    ]
