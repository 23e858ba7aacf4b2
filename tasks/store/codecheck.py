"""Has the code that trained an experiment changed? Answered without importing it.

``run.json`` stores, for the loader, builder and objective, the qualified name and a hash
of the function's source (:meth:`tasks.registry.Entry.fingerprint`). ``forge ls`` must not
import torch or TensorFlow, and user plugin modules usually do, so here the function's
source is located and hashed statically: the module file is found with
:func:`importlib.util.find_spec` (which imports only parent packages) and the function
is cut out exactly as :func:`inspect.getsource` would (decorators included).
``forge status`` compares against the live registry instead.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import os
import textwrap

__all__ = ["static_fingerprint"]

_file_cache: dict[tuple[str, int, int], tuple[list[str], ast.Module] | None] = {}
_print_cache: dict[str, str | None] = {}


def _module_file(parts: list[str]) -> tuple[str, int] | None:
    """The source file of the longest importable module prefix of ``parts`` and its length."""
    for i in range(1, len(parts)):
        name = ".".join(parts[:i])
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            return None
        if spec is None:
            return None
        if spec.submodule_search_locations is None:  # a plain module: the rest is a qualname
            return (spec.origin, i) if spec.origin and spec.origin.endswith(".py") else None
    return None


def _parse(path: str) -> tuple[list[str], ast.Module] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _file_cache:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            _file_cache[key] = (text.splitlines(keepends=True), ast.parse(text))
        except (OSError, SyntaxError, ValueError):
            _file_cache[key] = None
    return _file_cache[key]


_Def = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _find_def(body: list[ast.stmt], names: list[str]) -> _Def | None:
    for node in body:
        if isinstance(node, _Def):
            if node.name == names[0]:
                if len(names) == 1:
                    return node
                return _find_def(node.body, names[1:])
    return None


def static_fingerprint(qualname: str) -> str | None:
    """The fingerprint ``Entry.fingerprint()`` would give ``module.function``, or None when
    the source cannot be found (module gone, function defined inside another, ...)."""
    if qualname in _print_cache:
        return _print_cache[qualname]
    result: str | None = None
    parts = qualname.split(".")
    found = _module_file(parts) if "<locals>" not in qualname else None
    if found is not None:
        path, used = found
        parsed = _parse(path)
        node = _find_def(parsed[1].body, parts[used:]) if parsed else None
        if parsed is not None and node is not None:
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            block = inspect.getblock(parsed[0][first - 1 :])
            source = textwrap.dedent("".join(block))
            result = hashlib.sha256(source.encode()).hexdigest()[:16]
    _print_cache[qualname] = result
    return result
