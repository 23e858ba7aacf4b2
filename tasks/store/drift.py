"""Has the code that trained an experiment changed since? One check for every caller.

Train stores, in ``run.json`` ``code``, the name, qualified name and source hash of each
piece of user-replaceable code it ran (:func:`code_fingerprints`). :func:`code_drift`
compares them with what is there now. *Now* comes from a lookup, so the same rules serve
two questions:

* :func:`live_lookup` asks the registry (imports plugin modules): ``forge status`` and
  LoadTrained, which will run that code anyway;
* :func:`static_lookup` hashes the function's source without importing it
  (:mod:`tasks.store.codecheck`): ``forge ls``, which must not import torch or TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tasks.errors import RegistryError

__all__ = [
    "ROLES",
    "Current",
    "Drift",
    "code_drift",
    "code_fingerprints",
    "live_lookup",
    "static_lookup",
]

# role in run.json → (registry kind, whether the entry is per framework)
ROLES: dict[str, tuple[str, bool]] = {
    "loader": ("dataset", False),
    "builder": ("model", True),
    "objective": ("objective", True),
}


@dataclass(frozen=True)
class Current:
    """What a stored role resolves to now."""

    qualname: str
    fingerprint: str | None


Lookup = Callable[[str, Mapping[str, Any]], Current | None]


@dataclass(frozen=True)
class Drift:
    """One role whose code is not (provably) the code it was trained with.

    ``kind`` is ``gone`` (no longer registered / found), ``moved`` (registered under the
    same name but another qualified name), ``changed`` (same function, other source) or
    ``unverifiable`` (a fingerprint is unknown on one side, so nothing vouches for it).
    """

    role: str
    name: str
    kind: str
    then: str
    now: str | None

    def describe(self) -> str:
        """One line for users: what changed, in their words."""
        what = "data loader code" if self.role == "loader" else "model code"
        if self.kind == "gone":
            return f"{what} changed: {self.role} {self.name!r} is no longer registered"
        if self.kind == "moved":
            return (
                f"{what} changed: {self.role} {self.name!r} is now {self.now} "
                f"(trained with {self.then})"
            )
        if self.kind == "changed":
            return (
                f"{what} changed: the source of {self.role} {self.name!r} ({self.now}) "
                "differs from when it was trained"
            )
        return f"{what} cannot be verified: {self.role} {self.name!r} has no source fingerprint"


def code_fingerprints(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Name, qualified name and source hash of the loader, builder and objective ``config``
    (the resolved ``{"data", "model", "train"}``) uses, as ``run.json`` stores them."""
    from tasks.registry import get_entry

    model = config["model"]
    chosen = {"loader": config["data"]["loader"], "builder": model["builder"]}
    if model.get("objective"):
        chosen["objective"] = model["objective"]
    out: dict[str, dict[str, Any]] = {}
    for role, name in chosen.items():
        kind, per_framework = ROLES[role]
        entry = get_entry(kind, name, model["framework"] if per_framework else None)  # type: ignore[arg-type]
        out[role] = {
            "name": entry.name,
            "qualname": entry.qualname,
            "fingerprint": entry.fingerprint(),
        }
    return out


def live_lookup(framework: str | None) -> Lookup:
    """Resolve roles through the registry (importing the configured plugin modules).

    Raises (from the returned lookup):
        ConfigError: a configured plugin module cannot be imported.
    """
    from tasks.registry import get_entry

    def lookup(role: str, info: Mapping[str, Any]) -> Current | None:
        kind, per_framework = ROLES[role]
        try:
            entry = get_entry(kind, str(info.get("name")), framework if per_framework else None)  # type: ignore[arg-type]
        except RegistryError:
            return None
        return Current(entry.qualname, entry.fingerprint())

    return lookup


def static_lookup() -> Lookup:
    """Resolve roles by hashing the stored qualified name's source, importing nothing."""
    from tasks.store.codecheck import static_fingerprint

    cache: dict[str, str | None] = {}

    def lookup(role: str, info: Mapping[str, Any]) -> Current | None:
        qualname = info.get("qualname")
        if not isinstance(qualname, str) or not qualname:
            return None
        if qualname not in cache:
            cache[qualname] = static_fingerprint(qualname)
        fingerprint = cache[qualname]
        return None if fingerprint is None else Current(qualname, fingerprint)

    return lookup


def code_drift(code: Mapping[str, Any], lookup: Lookup) -> list[Drift]:
    """Every role of ``run.json``'s ``code`` whose code is not provably unchanged.

    Args:
        code: ``run.json``'s ``code`` mapping (unknown roles and malformed entries are
            skipped: a damaged record is reported by its reader, not here).
        lookup: :func:`live_lookup` or :func:`static_lookup`.
    """
    drifts: list[Drift] = []
    for role, info in sorted(code.items()):
        if role not in ROLES or not isinstance(info, Mapping):
            continue
        name, then = str(info.get("name")), str(info.get("qualname"))
        current = lookup(role, info)
        if current is None:
            drifts.append(Drift(role, name, "gone", then, None))
        elif current.qualname != then:
            drifts.append(Drift(role, name, "moved", then, current.qualname))
        elif info.get("fingerprint") is None or current.fingerprint is None:
            drifts.append(Drift(role, name, "unverifiable", then, current.qualname))
        elif current.fingerprint != info["fingerprint"]:
            drifts.append(Drift(role, name, "changed", then, current.qualname))
    return drifts
