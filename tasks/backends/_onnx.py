"""The torch backend's code-free export: an ONNX graph run by onnxruntime.

Why ONNX and not ``torch.export``: ``torch.export.load`` turns names stored in a ``.pt2``
archive into Python source and runs it, may unpickle payloads and ``eval`` shape
expressions, so a crafted ``model.pt2`` runs any command however carefully its parts are
checked first. An ONNX file is a protobuf graph of standard operators that onnxruntime
executes in C++; no operator of the standard (``ai.onnx``) domain reads or writes files or
starts processes. What remains is kept out by :func:`check_model`, before onnxruntime sees
the file: tensors stored in *external* files (which onnxruntime would read from any path),
operators of any other domain (contrib and custom operators, which may need a library),
and model-local functions. The checked model is handed to onnxruntime as bytes, forced to
be read as ONNX, so nothing is resolved against the file system.

Output structure (one tensor, a tuple or a dict of tensors) is kept as JSON in the model's
``metadata_props`` under :data:`OUTPUTS_KEY` and validated on load.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.errors import CorruptArtifactError
from tasks.store.jsonio import dumps_json

__all__ = ["OUTPUTS_KEY", "check_model", "export_onnx", "load_onnx"]

OUTPUTS_KEY = "forge.outputs"
OPSET = 17
_DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})
_MAX_BYTES = 2 << 30  # protobuf's own limit; a bigger file is not a Forge export
_ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _refuse(path: Path, why: str) -> CorruptArtifactError:
    return CorruptArtifactError(
        f"code-free export {path} is refused: {why}. Forge only runs ONNX files holding "
        "standard operators and tensors stored inside the file, because anything else could "
        "read other files or load code; retrain the experiment to write a new export, or load "
        "it with its builder (code_free=False)"
    )


def _output_names(outputs: Any) -> tuple[str, list[str]]:
    """The structure kind and the ONNX output names of a model's outputs."""
    import torch

    if isinstance(outputs, torch.Tensor):
        return "tensor", ["output"]
    if isinstance(outputs, Mapping):
        if not all(isinstance(v, torch.Tensor) for v in outputs.values()):
            raise TypeError("a dict output must map names to tensors")
        return "dict", [str(k) for k in outputs]
    if isinstance(outputs, tuple | list) and all(isinstance(v, torch.Tensor) for v in outputs):
        return "tuple", [f"output_{i}" for i in range(len(outputs))]
    raise TypeError(f"outputs of type {type(outputs).__name__} cannot be exported to ONNX")


def export_onnx(model: Any, examples: tuple[Any, ...], inputs: Sequence[str], path: Path) -> None:
    """Write ``model`` (in eval mode, on the CPU) as an ONNX file with a dynamic batch axis.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs neither onnxscript nor
    a network, and writes standard-domain operators only.
    """
    import onnx
    import torch

    with torch.no_grad():
        kind, names = _output_names(model(*examples))
    batch_axes = {name: {0: "batch"} for name in (*inputs, *names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        torch.onnx.export(
            model,
            examples,
            str(path),
            input_names=list(inputs),
            output_names=names,
            dynamic_axes=batch_axes,
            opset_version=OPSET,
            dynamo=False,
            external_data=False,
        )
    proto = onnx.load(str(path), load_external_data=False)
    entry = proto.metadata_props.add()
    entry.key, entry.value = OUTPUTS_KEY, dumps_json({"kind": kind, "names": names})
    onnx.save(proto, str(path))
    _verify(model, examples, inputs, path)


def _verify(model: Any, examples: tuple[Any, ...], inputs: Sequence[str], path: Path) -> None:
    """Check that the export runs at another batch size and agrees with ``model``.

    Tracing turns Python-side values such as ``len(x)`` into constants; such a model
    exports without complaint but would fail, or silently differ, at any other batch size.

    Raises:
        ValueError: the export does not reproduce the model's outputs.
    """
    import torch

    batch = tuple(torch.zeros((3, *e.shape[1:]), dtype=e.dtype) + 1 for e in examples)
    with torch.no_grad():
        expected = model(*batch)
    try:
        got = load_onnx(path, inputs)({n: t.numpy() for n, t in zip(inputs, batch, strict=True)})
    except Exception as err:  # onnxruntime raises its own types for a failing kernel
        detail = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise ValueError(
            f"the ONNX export does not run at batch size 3 (a value such as len(x) was traced "
            f"as a constant?): {detail}"
        ) from err
    if isinstance(expected, torch.Tensor):
        pairs = [(expected, got)]
    elif isinstance(expected, Mapping):
        pairs = [(v, got[k]) for k, v in expected.items()]
    else:
        pairs = list(zip(expected, got, strict=True))
    for want, have in pairs:
        want_np = want.detach().cpu().numpy()
        if want_np.shape != np.shape(have) or not np.allclose(want_np, have, rtol=1e-3, atol=1e-4):
            raise ValueError(
                "the ONNX export does not reproduce the model at batch size 3 (a value such "
                "as len(x) was traced as a constant?)"
            )


def _graphs(graph: Any) -> Any:
    """``graph`` and every subgraph of its nodes (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _external(tensor: Any) -> bool:
    import onnx

    return bool(tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0)


def check_model(proto: Any, path: Path) -> None:
    """Refuse an ONNX model that could read other files or need code beyond onnxruntime.

    Raises:
        CorruptArtifactError: external tensors, non-standard operator domains, local
            functions or training info.
    """
    if proto.functions:
        raise _refuse(path, "it defines model-local functions")
    if len(proto.training_info):
        raise _refuse(path, "it carries training information")
    for opset in proto.opset_import:
        if opset.domain not in _DEFAULT_DOMAINS:
            raise _refuse(path, f"it imports the operator domain {opset.domain!r}")
    for graph in _graphs(proto.graph):
        for tensor in graph.initializer:
            if _external(tensor):
                raise _refuse(path, f"tensor {tensor.name!r} is stored in an external file")
        for sparse in graph.sparse_initializer:
            if _external(sparse.values) or _external(sparse.indices):
                raise _refuse(path, "a sparse tensor is stored in an external file")
        for node in graph.node:
            if node.domain not in _DEFAULT_DOMAINS:
                raise _refuse(path, f"node {node.name!r} is a {node.domain}:{node.op_type}")
            for attr in node.attribute:
                tensors = [attr.t] if attr.HasField("t") else []
                tensors += list(attr.tensors)
                if attr.HasField("sparse_tensor"):
                    tensors += [attr.sparse_tensor.values, attr.sparse_tensor.indices]
                if any(_external(t) for t in tensors):
                    raise _refuse(path, f"node {node.name!r} holds an external tensor")


def _structure(proto: Any, path: Path) -> tuple[str, list[str]]:
    meta = {entry.key: entry.value for entry in proto.metadata_props}
    try:
        value = json.loads(meta[OUTPUTS_KEY])
        kind, names = value["kind"], value["names"]
    except (KeyError, ValueError, TypeError) as err:
        raise _refuse(path, f"its metadata has no valid {OUTPUTS_KEY!r} entry") from err
    graph_outputs = [out.name for out in proto.graph.output]
    if (
        kind not in ("tensor", "tuple", "dict")
        or not isinstance(names, list)
        or names != graph_outputs
        or (kind == "tensor" and len(names) != 1)
    ):
        raise _refuse(path, f"its {OUTPUTS_KEY!r} entry does not describe the graph outputs")
    return kind, names


def load_onnx(path: Path, inputs: Sequence[str]) -> Callable[[Mapping[str, np.ndarray]], Any]:
    """A ``batch → outputs`` callable running the checked ONNX file with onnxruntime.

    Raises:
        CorruptArtifactError: the file is not ONNX, fails :func:`check_model`, or its
            inputs are not the model config's ``inputs``.
    """
    import onnx
    import onnxruntime as ort
    from google.protobuf.message import DecodeError

    try:
        if path.stat().st_size > _MAX_BYTES:
            raise _refuse(path, f"it is larger than {_MAX_BYTES} bytes")
        proto = onnx.load_model_from_string(path.read_bytes())
    except (OSError, DecodeError, ValueError) as err:
        raise CorruptArtifactError(
            f"code-free export {path} cannot be read as ONNX (truncated or tampered with): "
            f"{str(err).splitlines()[0][:300] if str(err) else type(err).__name__}"
        ) from err
    check_model(proto, path)
    kind, names = _structure(proto, path)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.load_model_format", "ONNX")
    options.log_severity_level = 3
    ort.set_default_logger_severity(3)  # kernel errors are raised; do not print them too
    try:
        session = ort.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise CorruptArtifactError(
            f"code-free export {path} cannot be loaded by onnxruntime (truncated or tampered "
            f"with): {str(err).splitlines()[0][:300] if str(err) else type(err).__name__}"
        ) from err
    feeds = session.get_inputs()
    if [feed.name for feed in feeds] != list(inputs):
        raise _refuse(path, f"its inputs {[f.name for f in feeds]} are not {list(inputs)}")
    dtypes = []
    for feed in feeds:
        if feed.type not in _ONNX_DTYPES:
            raise _refuse(path, f"input {feed.name!r} has the unsupported type {feed.type}")
        dtypes.append(_ONNX_DTYPES[feed.type])

    def run(batch: Mapping[str, np.ndarray]) -> Any:
        feed: dict[str, np.ndarray] = {
            name: np.ascontiguousarray(batch[name], dtype=dtype)
            for name, dtype in zip(inputs, dtypes, strict=True)
        }
        outs = session.run(names, feed)
        if kind == "tensor":
            return outs[0]
        if kind == "dict":
            return dict(zip(names, outs, strict=True))
        return tuple(outs)

    run.module = session  # type: ignore[attr-defined]  # LoadTrained.model in code-free mode
    return run
