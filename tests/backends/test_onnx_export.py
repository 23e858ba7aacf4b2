"""The torch backend's ONNX export: round trips, refuses what could reach outside the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch: Any = pytest.importorskip("torch")
onnx: Any = pytest.importorskip("onnx")

from tasks.backends._onnx import OUTPUTS_KEY, export_onnx, load_onnx  # noqa: E402
from tasks.errors import CorruptArtifactError  # noqa: E402


class TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 3)
        self.b = torch.nn.Linear(4, 1)

    def forward(self, x: Any) -> Any:
        return {"logits": self.a(x), "score": torch.sigmoid(self.b(x))}


class FixedBatch(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        return self.net(x.reshape(len(x), -1))


def _export(tmp_path: Path, model: Any) -> Path:
    path = tmp_path / "model.onnx"
    export_onnx(model.eval(), (torch.zeros(2, 4),), ["x"], path)
    return path


def test_dict_outputs_round_trip_at_any_batch_size(tmp_path: Path) -> None:
    model = TwoHeads()
    run = load_onnx(_export(tmp_path, model), ["x"])
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    out = run({"x": x})
    with torch.no_grad():
        expected = model(torch.from_numpy(x))
    assert list(out) == ["logits", "score"]
    for name, value in expected.items():
        np.testing.assert_allclose(out[name], value.numpy(), rtol=1e-5, atol=1e-6)


def test_a_batch_size_traced_as_constant_fails_the_export(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch size 3"):
        _export(tmp_path, FixedBatch())


def _edit(path: Path, change: Any) -> None:
    proto = onnx.load(str(path), load_external_data=False)
    change(proto)
    path.write_bytes(proto.SerializeToString())


def _external_weight(proto: Any) -> None:
    tensor = proto.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "weights.bin"


def _custom_domain(proto: Any) -> None:
    proto.graph.node[0].domain = "com.microsoft"


def _local_function(proto: Any) -> None:
    proto.functions.add().name = "helper"


def _bad_outputs(proto: Any) -> None:
    for entry in proto.metadata_props:
        if entry.key == OUTPUTS_KEY:
            entry.value = '{"kind": "dict", "names": ["other"]}'


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (_external_weight, "external file"),
        (_custom_domain, "com.microsoft"),
        (_local_function, "local functions"),
        (_bad_outputs, "does not describe"),
    ],
    ids=["external-data", "custom-domain", "local-function", "outputs-metadata"],
)
def test_onnx_files_beyond_what_forge_writes_are_refused(
    tmp_path: Path, change: Any, why: str
) -> None:
    path = _export(tmp_path, TwoHeads())
    (tmp_path / "weights.bin").write_bytes(b"\0" * 64)
    _edit(path, change)
    with pytest.raises(CorruptArtifactError, match=f"model.onnx is refused: .*{why}"):
        load_onnx(path, ["x"])


def test_truncated_onnx_is_a_corrupt_artifact(tmp_path: Path) -> None:
    path = _export(tmp_path, TwoHeads())
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptArtifactError, match="model.onnx"):
        load_onnx(path, ["x"])
