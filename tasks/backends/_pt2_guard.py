"""Checks that make ``torch.export.load`` safe on a ``.pt2`` file somebody sent you.

``torch.export.load`` is documented as *not* safe on untrusted files, and for good reasons:
a ``.pt2`` archive may hold payloads it reads with ``torch.load(weights_only=False)`` or
``pickle.loads`` (pickled weights/constants, custom and opaque objects, legacy ``.pt``
weight files, sample inputs that fail a weights-only load), AOTInductor shared libraries it
``dlopen``s, and symbolic-shape expressions it hands to ``sympy.sympify`` (which ``eval``s
its argument). A graph node may also name any ``torch.*`` attribute as its target.

Forge's own exports (``torch.export.save`` of a plain ``nn.Module``) use none of that:
tensors are raw bytes described by JSON, sample inputs load with ``weights_only=True``,
shape expressions are ``Symbol('s0', positive=True, integer=True)``. So
:func:`check_archive` accepts exactly that subset *before* anything is deserialised, and
:func:`check_program` checks, after loading and before anything runs, that every graph
node calls a real operator. Anything else is refused as a :class:`CorruptArtifactError`.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.errors import CorruptArtifactError

__all__ = ["check_archive", "check_program"]

_MAX_JSON_BYTES = 64 << 20
_SYMBOL = re.compile(r"^[a-z]+[0-9]+$")
# Names a shape expression may use: sympy constructors and assumptions, and the functions
# torch's deserialiser offers it (torch.utils._sympy.functions).
_EXPR_NAMES = frozenset(
    {
        "Symbol", "Integer", "Rational", "Float", "True", "False", "None", "oo", "zoo", "nan",
        "positive", "negative", "integer", "nonnegative", "nonpositive", "real", "finite",
        "Add", "Mul", "Pow", "Max", "Min", "Abs", "floor", "ceiling", "sqrt", "Piecewise",
        "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "sympy_and", "sympy_or",
        "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt",
        "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow",
        "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat",
        "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
    }
)  # fmt: skip
_EXPR_OPS = frozenset(
    {"(", ")", ",", "+", "-", "*", "/", "//", "%", "**", "=", "==", "!=", "<", "<=", ">", ">="}
)
_TOP_FILES = frozenset(
    {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
)


def _refuse(path: Path, why: str) -> CorruptArtifactError:
    return CorruptArtifactError(
        f"code-free export {path} is refused: {why}. Forge only loads .pt2 files holding plain "
        "tensors and a graph of torch operators, because anything else would run code from the "
        "file; re-export it with Train, or load the experiment with its builder (code_free=False)"
    )


def _safe_expr(text: str) -> bool:
    """Whether a shape expression only uses numbers, symbols and allowed sympy names."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return False
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if tok.type == tokenize.NUMBER:
            continue
        if tok.type == tokenize.NAME and (tok.string in _EXPR_NAMES or _SYMBOL.match(tok.string)):
            continue
        if (
            tok.type == tokenize.STRING
            and _SYMBOL.match(tok.string.strip("'\""))
            and (tok.string[0] == tok.string[-1] and tok.string[0] in "'\"" and len(tok.string) > 2)
        ):
            continue
        if tok.type == tokenize.OP and tok.string in _EXPR_OPS:
            continue
        return False
    return True


def _expr_strings(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr_str":
                yield value
            else:
                yield from _expr_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _expr_strings(value)


def _read_json(archive: zipfile.ZipFile, name: str, path: Path) -> Any:
    if archive.getinfo(name).file_size > _MAX_JSON_BYTES:
        raise _refuse(path, f"{name} is larger than {_MAX_JSON_BYTES} bytes")
    try:
        return json.loads(archive.read(name))
    except ValueError as err:
        raise _refuse(path, f"{name} is not valid JSON ({err})") from err


def _check_payload_config(config: Any, name: str, path: Path, prefixes: tuple[str, ...]) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise _refuse(path, f"{name} does not describe its payloads")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict):
            raise _refuse(path, f"{name} entry {fqn!r} is malformed")
        if meta.get("use_pickle"):
            raise _refuse(path, f"{name} stores {fqn!r} as a pickle")
        path_name = str(meta.get("path_name", ""))
        if not path_name.startswith(prefixes) or "/" in path_name or ".." in path_name:
            raise _refuse(path, f"{name} entry {fqn!r} is a {path_name!r} payload")


def check_archive(path: Path) -> None:
    """Refuse a ``.pt2`` file that ``torch.export.load`` could not load without running code.

    Raises:
        CorruptArtifactError: the file is not a zip archive, or holds anything beyond plain
            tensors, JSON graphs and weights-only sample inputs.
    """
    import torch
    from torch.export.pt2_archive import constants as pt2

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise CorruptArtifactError(
            f"code-free export {path} is not a valid .pt2 archive (truncated or tampered with): "
            f"{err}"
        ) from err
    with archive:
        names = archive.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or any("/" not in n for n in names):
            raise _refuse(path, "its entries do not share one archive folder")
        root = roots.pop() + "/"
        weight_prefix = (pt2.WEIGHT_FILENAME_PREFIX,)
        constant_prefix = (pt2.TENSOR_CONSTANT_FILENAME_PREFIX,)
        for full in names:
            name = full[len(root) :]
            if name in _TOP_FILES or name.startswith(pt2.EXTRA_DIR):
                continue
            if name.startswith(pt2.MODELS_DIR) and name.endswith(".json"):
                for expr in _expr_strings(_read_json(archive, full, path)):
                    if not isinstance(expr, str) or not _safe_expr(expr):
                        raise _refuse(path, f"{name} holds the shape expression {expr!r}")
                continue
            if name.startswith(pt2.SAMPLE_INPUTS_DIR) and name.endswith(".pt"):
                # torch retries a failed weights-only load with full unpickling; fail first.
                try:
                    torch.load(io.BytesIO(archive.read(full)), weights_only=True)
                except Exception as err:
                    raise _refuse(path, f"{name} is not a weights-only file") from err
                continue
            for folder, prefixes in (
                (pt2.WEIGHTS_DIR, weight_prefix),
                (pt2.CONSTANTS_DIR, constant_prefix),
            ):
                if not name.startswith(folder):
                    continue
                leaf = name[len(folder) :]
                if leaf.endswith("_config.json"):
                    _check_payload_config(_read_json(archive, full, path), name, path, prefixes)
                    break
                if leaf.startswith(prefixes) and "/" not in leaf and "." not in leaf:
                    break
                raise _refuse(path, f"it holds {name}")
            else:
                raise _refuse(path, f"it holds {name}")


def check_program(program: Any, path: Path) -> None:
    """Refuse an exported program whose graph calls anything but torch operators.

    Raises:
        CorruptArtifactError: a graph node targets a Python callable (e.g. ``torch.os.system``).
    """
    import operator

    import torch

    allowed = (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)
    for module in program.graph_module.modules():
        graph = getattr(module, "graph", None)
        if graph is None:
            continue
        for node in graph.nodes:
            if node.op not in ("call_function", "call_method"):
                continue
            target = node.target
            if node.op == "call_function" and (
                isinstance(target, allowed) or target is operator.getitem
            ):
                continue
            raise _refuse(path, f"graph node {node.name!r} calls {target!r}")
