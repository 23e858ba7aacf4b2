"""Checks that make ``tf.saved_model.load`` and the loaded serving function safe to run.

A SavedModel is a graph, and TensorFlow graphs can do far more than arithmetic: ``ReadFile``,
``WriteFile``, ``SaveV2``/``RestoreV2`` (read and write checkpoint files anywhere),
``PyFunc`` (call Python), dataset and queue ops that open files, and TF1-style models whose
init and restore ops ``tf.saved_model.load`` runs while loading. A crafted
``model.savedmodel`` in a results folder somebody sent you can therefore write files when
it is loaded or when it predicts.

:func:`check_saved_model` parses ``saved_model.pb`` with TensorFlow's protobuf classes,
without loading it, and refuses it unless:

* it is a TF2 SavedModel (one meta graph with an object graph) without assets, so the
  TF1 loader, which runs graph ops while loading, is never used;
* every function TensorFlow can call after loading (those the object graph names, gradient
  functions, and everything they call) uses only the pure-compute operators of
  :data:`FUNCTION_OPS`, built from what Forge's exports of its builders (mlp, cnn, linear
  and the VAE example) contain plus other stateless math;
* the top-level graph nodes, which only the TF1 loader runs, are the few Keras writes.

The only functions left unchecked are those nothing in the object graph reaches: the
``_traced_save`` / ``_traced_restore`` functions every ``tf.saved_model.save`` adds for the
TF1 ``saver_def``, which hold ``SaveV2``/``RestoreV2`` and are only run by a TF1 session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.errors import CorruptArtifactError

__all__ = ["FUNCTION_OPS", "TOP_LEVEL_OPS", "check_saved_model"]

_MAX_PB_BYTES = 256 << 20

# Operators of the top-level graph of a Keras 3 export (read only by a TF1 session).
TOP_LEVEL_OPS = frozenset(
    {
        "AssignVariableOp", "Const", "NoOp", "Placeholder", "ReadVariableOp",
        "StatefulPartitionedCall", "VarHandleOp", "VarIsInitializedOp",
    }
)  # fmt: skip

# Stateless arithmetic, array and neural-network operators, plus reading/assigning the
# model's own variables and calling other checked functions. None of them touches a file,
# a process, Python or the network.
FUNCTION_OPS = frozenset(
    {
        # seen in Forge's exports of mlp, cnn, linear and the VAE example
        "AssignVariableOp", "BiasAdd", "Const", "Conv2D", "DisableCopyOnRead", "Identity",
        "MatMul", "MaxPool", "NoOp", "Pack", "ReadVariableOp", "Relu", "Reshape", "Select",
        "Shape", "Sigmoid", "Split", "Squeeze", "StatefulPartitionedCall",
        "PartitionedCall", "StridedSlice", "IdentityN", "StopGradient",
        # activations
        "Elu", "Selu", "Relu6", "LeakyRelu", "Tanh", "Softmax", "LogSoftmax", "Softplus",
        "Softsign", "Erf", "Erfc",
        # elementwise math
        "Add", "AddV2", "AddN", "Sub", "Mul", "RealDiv", "Div", "DivNoNan", "FloorDiv",
        "FloorMod", "Neg", "Abs", "Sign", "Square", "Sqrt", "Rsqrt", "Exp", "Expm1", "Log",
        "Log1p", "Pow", "Maximum", "Minimum", "Reciprocal", "SquaredDifference",
        "ClipByValue", "Floor", "Ceil", "Round", "Cast", "Greater", "GreaterEqual", "Less",
        "LessEqual", "Equal", "NotEqual", "LogicalAnd", "LogicalOr", "LogicalNot",
        "SelectV2", "Where", "IsNan", "IsFinite", "ZerosLike", "OnesLike", "Fill",
        # reductions and linear algebra
        "Sum", "Mean", "Max", "Min", "Prod", "ArgMax", "ArgMin", "All", "Any",
        "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "L2Loss",
        # shapes and indexing
        "ConcatV2", "SplitV", "Slice", "Transpose", "ExpandDims", "Tile", "Range",
        "GatherV2", "Unpack", "BroadcastTo", "BroadcastArgs", "Rank", "Size", "Pad",
        "PadV2", "MirrorPad", "OneHot", "Cumsum", "TopKV2", "ShapeN", "Snapshot",
        # convolution, pooling, normalisation
        "Conv1D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "AvgPool",
        "AvgPool3D", "MaxPool3D", "MaxPoolV2", "FusedBatchNormV3", "ResizeBilinear",
        "ResizeNearestNeighbor",
    }
)  # fmt: skip


def _refuse(path: Path, why: str) -> CorruptArtifactError:
    return CorruptArtifactError(
        f"code-free export {path} is refused: {why}. Forge only loads SavedModels whose "
        "graphs hold arithmetic on the model's own variables, because other operators can "
        "read or write files or run code; retrain the experiment to write a new export, or "
        "load it with its builder (code_free=False)"
    )


def _called(nodes: Any) -> Iterator[str]:
    """Names of the functions the nodes' attributes refer to (``f``, branches, bodies)."""
    for node in nodes:
        for attr in node.attr.values():
            if attr.HasField("func"):
                yield attr.func.name
            if attr.HasField("list"):
                yield from (f.name for f in attr.list.func)


def _object_graph_functions(object_graph: Any) -> Iterator[str]:
    """Every function name the object graph can hand to Python after loading."""
    yield from object_graph.concrete_functions
    for node in object_graph.nodes:
        kind = node.WhichOneof("kind")
        if kind == "function":
            yield from node.function.concrete_functions
        elif kind == "bare_concrete_function":
            yield node.bare_concrete_function.concrete_function_name


def check_saved_model(path: Path) -> None:
    """Refuse a SavedModel folder that could touch files or run code when loaded or called.

    Raises:
        CorruptArtifactError: naming the folder and the first offending part.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb = path / "saved_model.pb"
    if (path / "saved_model.pbtxt").exists():
        raise _refuse(path, "it holds a saved_model.pbtxt")
    try:
        size = pb.stat().st_size
        if size > _MAX_PB_BYTES:
            raise _refuse(path, f"saved_model.pb is larger than {_MAX_PB_BYTES} bytes")
        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString(pb.read_bytes())
    except (OSError, DecodeError) as err:
        raise CorruptArtifactError(
            f"code-free export {path} cannot be read as a SavedModel (truncated or tampered "
            f"with): {err}"
        ) from err
    if len(saved.meta_graphs) != 1 or not saved.meta_graphs[0].HasField("object_graph_def"):
        raise _refuse(path, "it is not a TF2 SavedModel with one meta graph")
    meta = saved.meta_graphs[0]
    if meta.asset_file_def or any(
        n.WhichOneof("kind") == "asset" for n in meta.object_graph_def.nodes
    ):
        raise _refuse(path, "it carries asset files")
    for node in meta.graph_def.node:
        if node.op not in TOP_LEVEL_OPS:
            raise _refuse(path, f"its graph node {node.name!r} is a {node.op}")
    library = {f.signature.name: f for f in meta.graph_def.library.function}
    roots = set(_object_graph_functions(meta.object_graph_def))
    roots.update(g.gradient_func for g in meta.graph_def.library.gradient)
    # Walk every reachable function (in a fixed order) and name every offending operator,
    # so the message is the same on every run and shows the worst one too.
    pending, reached = sorted(roots, reverse=True), set()
    offences: set[tuple[str, str]] = set()
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        function = library.get(name)
        if function is None:
            raise _refuse(path, f"it calls the function {name!r}, which it does not define")
        offences.update((name, n.op) for n in function.node_def if n.op not in FUNCTION_OPS)
        pending.extend(sorted(set(_called(function.node_def)) - reached, reverse=True))
    if offences:
        shown = "; ".join(f"function {f!r} runs the operator {op}" for f, op in sorted(offences))
        raise _refuse(path, shown)
