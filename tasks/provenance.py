"""Provenance of a run: versions, host, command line and the user's git state."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["git_state", "package_versions", "run_environment"]


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` (distributions), skipping the absent ones."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state(cwd: Path) -> tuple[dict[str, Any], str]:
    """Commit and dirty flag of the git work tree around ``cwd``, and its uncommitted diff.

    Returns:
        ``({"commit": sha | None, "dirty": bool | None, "root": ...}, diff_text)``; both
        empty when ``cwd`` is not inside a git work tree or git is missing.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=20
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}, ""
    try:
        status = git("status", "--porcelain", "--untracked-files=no")
        diff = git("diff", "HEAD") if status.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": commit, "dirty": None}, ""
    return {"commit": commit, "dirty": bool(status.strip())}, diff


def run_environment() -> dict[str, Any]:
    """Host, Python and command line of this process."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
    }
