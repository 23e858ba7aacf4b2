"""``environment.txt``: the installed packages of a training run, one ``name==version`` a line.

The format is ``pip freeze``'s (sorted case-insensitively), so the file can be fed back to
``pip install -r``. Lines that are blank or start with ``#`` are comments; a line without
``==`` is kept with an empty version rather than refused, so a hand-edited file still reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks.store.atomic import atomic_write_text
from tasks.store.names import ENVIRONMENT_FILE
from tasks.store.records import MISSING

__all__ = ["freeze_text", "read_packages", "write_packages"]


def freeze_text(packages: Mapping[str, str]) -> str:
    """``packages`` as ``pip freeze`` prints them: ``name==version`` lines, sorted."""
    names = sorted(packages, key=str.lower)
    return "".join(f"{name}=={packages[name]}\n" for name in names)


def write_packages(directory: Path, packages: Mapping[str, str]) -> None:
    """Write the experiment's ``environment.txt`` atomically."""
    atomic_write_text(Path(directory) / ENVIRONMENT_FILE, freeze_text(packages))


def read_packages(directory: Path) -> tuple[dict[str, str], str | None]:
    """The packages in the experiment's ``environment.txt`` and None, or ``({}, why)``.

    ``why`` is ``"missing"`` when the file is absent (an experiment trained before
    environments were captured, or one that has not finished yet).
    """
    path = Path(directory) / ENVIRONMENT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, MISSING
    except (OSError, UnicodeDecodeError) as err:
        return {}, f"{path.name}: cannot be read ({err})"
    packages: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        packages[name.strip()] = version.strip()
    return packages, None
