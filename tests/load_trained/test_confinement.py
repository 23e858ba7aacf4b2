"""Confinement of the paths an experiment reads: the lstat walk below a resolved folder
refuses exactly what full resolution refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import CorruptArtifactError
from tasks.experiment import confined

SECRET = "outside the results tree\n"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """An experiment folder (resolved) and a secret file outside it."""
    root = (tmp_path / "results" / "exp").resolve()
    (root / "model").mkdir(parents=True)
    (root / "model" / "best.json").write_text("{}\n", encoding="utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    return root, secret


@pytest.mark.parametrize("root_resolved", [True, False])
def test_a_plain_path_below_the_folder_is_its_own_resolution(
    tree: tuple[Path, Path], root_resolved: bool
) -> None:
    root, _ = tree
    path = root / "model" / "best.json"
    assert confined(path, root, root_resolved=root_resolved) == path.resolve()
    not_yet = root / "model" / "checkpoints" / "epoch-1.safetensors"  # may not exist yet
    assert confined(not_yet, root, root_resolved=root_resolved) == not_yet


@pytest.mark.parametrize("kind", ["file link", "folder link", "dot-dot"])
@pytest.mark.parametrize("root_resolved", [True, False])
def test_a_way_out_of_the_folder_is_refused(
    tree: tuple[Path, Path], kind: str, root_resolved: bool
) -> None:
    root, secret = tree
    if kind == "file link":
        path = root / "model" / "weights.safetensors"
        path.symlink_to(secret)
    elif kind == "folder link":
        (root / "linked").symlink_to(secret.parent)
        path = root / "linked" / secret.name
    else:
        path = root / "model" / ".." / ".." / ".." / secret.name
    # Control: without the guard the crafted path reads the file outside the tree.
    assert path.read_text(encoding="utf-8") == SECRET
    with pytest.raises(CorruptArtifactError, match="outside the experiment"):
        confined(path, root, root_resolved=root_resolved)


def test_a_link_that_stays_inside_is_followed(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    alias = root / "alias.json"
    alias.symlink_to(root / "model" / "best.json")
    assert confined(alias, root, root_resolved=True) == root / "model" / "best.json"
