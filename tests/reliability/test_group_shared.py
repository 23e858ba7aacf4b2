"""A results folder shared by a group (setgid folder, umask 002) works for every member.

Every file Forge writes honours the process umask, whatever library writes it
(safetensors creates its files ``0600``): run with umask 002, the whole experiment is
group-writable. A second member of the group then evaluates and trains on top of it; a
file the first member left unreadable is one ``StorageError`` naming the permission
problem, never "truncated or tampered with".

Two members on one machine, as root: the first member's tree is handed to another uid
(``chown``), and the second member is root without the capabilities that bypass file
permissions (``setpriv`` drops ``dac_override``, ``dac_read_search``, ``fowner``), so only
the group's permission bits let it in. (A plain ``setuid`` child could not even start
the interpreter when it lives in root's private home.)
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.forge_support import FRAMEWORK_PARAMS
from tests.support import CONFIGS, MODEL_CONFIGS, REPO, experiment_dirs, luigi_command, write_yaml

pytestmark = pytest.mark.slow  # trains real experiments through the luigi command

MOONS = CONFIGS / "data" / "moons.yaml"
IS_ROOT = os.geteuid() == 0


def _id(lookup: Callable[[str], object], name: str, attr: str, default: int) -> int:
    try:
        return int(getattr(lookup(name), attr))
    except KeyError:
        return default


OTHER_UID = _id(pwd.getpwnam, "nobody", "pw_uid", 65534)
GROUP = _id(grp.getgrnam, "nogroup", "gr_gid", 65534)


SETPRIV = shutil.which("setpriv")
# The second member: in the group, and subject to file permissions like any user.
AS_OTHER_MEMBER = [
    str(SETPRIV),
    "--groups",
    str(GROUP),
    "--bounding-set",
    "-dac_override,-dac_read_search,-fowner",
    "--",
]


def _group_umask() -> None:
    os.umask(0o002)


def luigi(shared: Path, second: bool, *args: str | Path) -> tuple[int, str]:
    """The real ``luigi`` command on the shared results folder, as the first or second
    member of the group, both with umask 002."""
    home = shared / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "MPLCONFIGDIR": str(home / "mpl"),
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [
        *(AS_OTHER_MEMBER if second else []),
        *luigi_command(),
        "--module",
        "pipelines",
        *map(str, args),
        "--results-dir",
        str(shared / "results"),
        "--local-scheduler",
        "--no-lock",  # luigi's pid folder (/tmp/luigi) belongs to whoever ran it first
    ]
    proc = subprocess.run(
        command,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_group_umask,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def shared() -> Iterator[Path]:
    """A group folder every member can reach (``tmp_path`` lies under a private 0700 one)."""
    folder = Path(tempfile.mkdtemp(prefix="forge-shared-"))
    try:
        if IS_ROOT:
            os.chown(folder, -1, GROUP)
        os.chmod(folder, 0o2775)
        (folder / "home").mkdir()
        os.chmod(folder / "home", 0o2777)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def not_group_writable(root: Path) -> list[str]:
    """Entries under ``root`` a group member could not write (folders: also enter)."""
    bad = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        need = 0o070 if stat.S_ISDIR(mode) else 0o060
        if mode & need != need:
            bad.append(f"{oct(mode & 0o7777)} {path.relative_to(root)}")
    return bad


def _train_args(framework: str, train: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "--data-config",
        MOONS,
        "--model-config",
        MODEL_CONFIGS[framework],
        "--train-config",
        train,
        *extra,
    ]


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_every_file_forge_writes_honours_a_group_umask(framework: str, shared: Path) -> None:
    train = write_yaml(shared / "tiny.yaml", "epochs: 2\nbatch_size: 64\n")
    code, out = luigi(shared, False, "Evaluate", *_train_args(framework, train))
    assert code == 0, out
    (exp,) = experiment_dirs(shared / "results")
    assert list(exp.glob("model/best.*")), "the weights must exist"
    assert not_group_writable(shared / "results") == []


@pytest.mark.skipif(
    not IS_ROOT or SETPRIV is None,
    reason="acting as a second member needs root and util-linux setpriv",
)
@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_a_second_member_evaluates_and_trains_and_permissions_read_as_storage_errors(
    framework: str, shared: Path
) -> None:
    train = write_yaml(shared / "tiny.yaml", "epochs: 2\nbatch_size: 64\n")
    code, out = luigi(shared, False, "Evaluate", *_train_args(framework, train))
    assert code == 0, out
    (exp,) = experiment_dirs(shared / "results")
    for path in [shared / "results", *(shared / "results").rglob("*")]:
        os.chown(path, OTHER_UID, GROUP, follow_symlinks=False)  # the first member's files

    # The other member: a new evaluation inside the first member's experiment, and a new
    # experiment inside the first member's model folder (reads data.h5, initial weights).
    val = write_yaml(shared / "val.yaml", "split: val\n")
    code, out = luigi(
        shared, OTHER_UID, "Evaluate", *_train_args(framework, train, "--eval-config", val)
    )
    assert code == 0, out
    more = ["--overrides", "train.epochs=3"]
    code, out = luigi(shared, True, "Train", *_train_args(framework, train, *more))
    assert code == 0, out
    assert len(experiment_dirs(shared / "results")) == 2
    owners = {p.stat().st_uid for p in (shared / "results").rglob("*")}
    assert owners == {0, OTHER_UID}, "both members must have written"
    assert {p.stat().st_gid for p in (shared / "results").rglob("*")} == {GROUP}
    assert not_group_writable(shared / "results") == []

    # Files the other member may not read (weights, then a record): a permission
    # problem, said as such, never "damaged" or "truncated, tampered with".
    (weights,) = (p for p in exp.glob("model/best.*") if p.suffix != ".json")
    for i, unreadable in enumerate([weights, exp / "model" / "best.json"]):
        os.chmod(unreadable, 0o600)
        again = write_yaml(shared / f"eval{i}.yaml", f"split: train\nbatch_size: {16 + i}\n")
        args = _train_args(framework, train, "--eval-config", again)
        code, out = luigi(shared, True, "Evaluate", *args)
        assert code != 0, out
        errors = [line for line in out.splitlines() if "Error:" in line]
        assert len(errors) == 1 and "StorageError" in errors[0], out
        assert "permission denied" in errors[0] and unreadable.name in errors[0], out
        assert "CorruptArtifactError" not in out and "Traceback" not in out, out
        os.chmod(unreadable, 0o664)
