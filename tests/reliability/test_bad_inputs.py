"""Hostile and broken input, each case driven through the real ``luigi`` command.

Every folder in ``bad_inputs/`` is one case: its files plus a ``case.yaml`` saying which
task and arguments to run, the error class and the message fragments it must print, and
(``setup``) which generated files it needs — binary inputs such as HDF5 links, pickles and
truncated checkpoints are made here at run time instead of being committed. In every file
and argument ``@CONFIGS@`` becomes the repository's ``configs`` folder and ``@SENTINEL@`` a
file that only a successful attack would create.

Each case must: exit non-zero; print the error exactly once, with the expected text; show
no traceback (unless ``--log-level DEBUG``); leave nothing that looks complete; never
create the sentinel.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.reliability.crashkit import CONFIGS, REPO, luigi_argv, run_luigi_to_end, train_args
from tests.support import npz_declaring

pytestmark = pytest.mark.slow  # trains real experiments through the luigi command

CASES_DIR = Path(__file__).parent / "bad_inputs"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "case.yaml").is_file())
EXPERIMENT_OVERRIDES = "train.epochs=1"


@dataclass
class Case:
    """One bad-input case copied into a scratch folder."""

    name: str
    folder: Path
    spec: dict[str, Any]
    sentinel: Path
    results: Path

    def subst(self, text: str) -> str:
        return text.replace("@CONFIGS@", str(CONFIGS)).replace("@SENTINEL@", str(self.sentinel))


class _Bomb:
    """Unpickling this runs a shell command (what a malicious pickle does)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.system, (self.command,))


def _xy(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 2)).astype(np.float32), (np.arange(n) % 2).astype(np.int64)


def _setup_nan_npz(case: Case) -> None:
    x, y = _xy()
    x[5, 1] = np.nan
    np.savez(case.folder / "data.npz", x=x, y=y)


def _setup_mismatched_npz(case: Case) -> None:
    x, y = _xy()
    np.savez(case.folder / "data.npz", x=x, y=y[:-4])


def _setup_negative_labels_npz(case: Case) -> None:
    x, y = _xy()
    np.savez(case.folder / "data.npz", x=x, y=y - 1)


def _setup_pickle_npz(case: Case) -> None:
    x, _ = _xy()
    bomb = np.empty(1, dtype=object)
    bomb[0] = _Bomb(f"touch {case.sentinel}")
    np.savez(case.folder / "data.npz", x=x, y=bomb)


def _setup_x_1d_npz(case: Case) -> None:
    x, y = _xy()
    np.savez(case.folder / "data.npz", x=x[:, 0], y=y)


def _setup_x_zero_width_npz(case: Case) -> None:
    x, y = _xy()
    np.savez(case.folder / "data.npz", x=x[:, :0], y=y)


def _setup_complex_npz(case: Case) -> None:
    x, y = _xy()
    np.savez(case.folder / "data.npz", x=x + 1j * x, y=y)


def _setup_one_hot_npz(case: Case) -> None:
    x, y = _xy()
    np.savez(case.folder / "data.npz", x=x, y=np.eye(2, dtype=np.int64)[y])


def _setup_sparse_labels_npz(case: Case) -> None:
    x, y = _xy()
    np.savez(case.folder / "data.npz", x=x, y=(y + 1) * 1000)


def _setup_huge_values_npz(case: Case) -> None:
    x, y = _xy()
    np.savez(case.folder / "data.npz", x=x.astype(np.float64) * 1e300, y=y)


def _setup_lying_npz(case: Case) -> None:
    npz_declaring(case.folder / "data.npz", (1000, 2), y_rows=len(_xy()[1]))


def _setup_terabyte_npz(case: Case) -> None:
    npz_declaring(case.folder / "data.npz", (10**12, 10), y_rows=len(_xy()[1]))


def _setup_terabyte_h5(case: Case) -> None:
    import h5py

    with h5py.File(case.folder / "data.h5", "w") as fh:
        fh.create_dataset("x", shape=(10**9, 1000), dtype="f8", chunks=(1, 1000))
        fh["y"] = _xy()[1]


def _setup_upstream_built(case: Case) -> None:
    """PrepareData and BuildModel of the case's configs, finished before the failing Train."""
    args = [case.subst(a) for a in case.spec["args"][:4]]
    code, out = run_luigi_to_end("BuildModel", args, case.results, case.folder / "build.log")
    assert code == 0, out


def _setup_oversized_yaml(case: Case) -> None:
    padding = "# " + "x" * 98 + "\n"
    (case.folder / "data.yaml").write_text("loader: moons\n" + padding * 12_000)


def _h5_with(case: Case, make: Callable[[Any, Path], None]) -> None:
    import h5py

    other = case.folder / "other.h5"
    with h5py.File(other, "w") as fh:
        fh["x"], fh["y"] = _xy()
    with h5py.File(case.folder / "data.h5", "w") as fh:
        make(fh, other)


def _setup_h5_external_link(case: Case) -> None:
    import h5py

    def make(fh: Any, other: Path) -> None:
        fh["x"] = h5py.ExternalLink(str(other), "/x")
        fh["y"] = _xy()[1]

    _h5_with(case, make)


def _setup_h5_external_storage(case: Case) -> None:
    x, y = _xy()
    raw = case.folder / "x.raw"
    raw.write_bytes(x.tobytes())

    def make(fh: Any, other: Path) -> None:
        fh.create_dataset("x", shape=x.shape, dtype=x.dtype, external=[(str(raw), 0, x.nbytes)])
        fh["y"] = y

    _h5_with(case, make)


def _setup_h5_virtual(case: Case) -> None:
    import h5py

    x, y = _xy()

    def make(fh: Any, other: Path) -> None:
        layout = h5py.VirtualLayout(shape=x.shape, dtype=x.dtype)
        layout[:] = h5py.VirtualSource(str(other), "x", shape=x.shape)
        fh.create_virtual_dataset("x", layout)
        fh["y"] = y

    _h5_with(case, make)


def _setup_readonly_results(case: Case) -> None:
    case.results.mkdir()
    case.results.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)


def _checkpoint_of(case: Case, epoch: int) -> Path:
    (path,) = case.results.glob(f"*/*/*/checkpoints/epoch-{epoch:04d}.pt")
    return path


def _setup_pickle_bomb_checkpoint(case: Case) -> None:
    path = _checkpoint_of(case, 1)
    path.write_bytes(pickle.dumps({"model": _Bomb(f"touch {case.sentinel}")}))


def _setup_truncated_checkpoint(case: Case) -> None:
    path = _checkpoint_of(case, 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _setup_truncated_weights(case: Case) -> None:
    (path,) = case.results.glob("*/*/*/model/best.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


_KERAS_LAMBDA = r"""
import sys
import keras

sentinel, target = sys.argv[1], sys.argv[2]
inputs = keras.Input((2,))
# Loading this layer's function without safe_mode would create the sentinel file; the path
# is a literal inside the function's code, so it travels with the archive.
payload = eval(f"lambda x: (open({sentinel!r}, 'w').close(), x)[1]")
hostile = keras.layers.Lambda(payload, output_shape=(2,))(inputs)
keras.Model(inputs, keras.layers.Dense(2)(hostile)).save(target)
"""


def _setup_keras_lambda_archive(case: Case) -> None:
    """Replace the best weights with a ``.keras`` archive holding a code-carrying Lambda."""
    import subprocess
    import sys

    (weights,) = case.results.glob("*/*/*/model/best.weights.h5")
    archive = case.folder / "hostile.keras"
    subprocess.run(
        [sys.executable, "-c", _KERAS_LAMBDA, str(case.sentinel), str(archive)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Building the hostile model may call the function once, in this trusted helper process.
    case.sentinel.unlink(missing_ok=True)
    shutil.copyfile(archive, weights)
    shutil.copyfile(archive, weights.with_name("best.keras"))


SETUPS: dict[str, Callable[[Case], None]] = {
    name[len("_setup_") :]: func for name, func in globals().items() if name.startswith("_setup_")
}


def _train_once(root: Path, framework: str) -> Path:
    code, out = run_luigi_to_end(
        "Train", train_args(framework, EXPERIMENT_OVERRIDES), root / "results", root / "train.log"
    )
    assert code == 0, out
    return root / "results"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch torch experiment (results directory), made once."""
    return _train_once(tmp_path_factory.mktemp("trained"), "torch")


@pytest.fixture(scope="module")
def trained_tf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch TensorFlow experiment (results directory), made once."""
    return _train_once(tmp_path_factory.mktemp("trained-tf"), "tensorflow")


def _prepare(name: str, tmp_path: Path, trained: Callable[[], Path]) -> Case:
    folder = tmp_path / name
    shutil.copytree(CASES_DIR / name, folder)
    case = Case(
        name,
        folder,
        yaml.safe_load((folder / "case.yaml").read_text()),
        tmp_path / "SENTINEL",
        tmp_path / "results",
    )
    for path in folder.iterdir():
        if path.suffix == ".yaml" and path.name != "case.yaml":
            path.write_text(case.subst(path.read_text()))
    if case.spec["kind"] == "experiment":
        shutil.copytree(trained(), case.results)
    if "setup" in case.spec:
        SETUPS[case.spec["setup"]](case)
    return case


def _args(case: Case) -> list[str]:
    if case.spec["kind"] == "experiment":
        framework = case.spec.get("framework", "torch")
        raw = [*train_args(framework, EXPERIMENT_OVERRIDES), "--eval-config", "eval.yaml"]
    else:
        raw = list(case.spec["args"])
    return [case.subst(a) for a in raw]


def _successes(results: Path) -> set[Path]:
    return set(results.rglob("_SUCCESS")) if results.is_dir() else set()


def _run(case: Case, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    prefix: list[str] = []
    if case.spec.get("setup") == "readonly_results" and os.geteuid() == 0:
        # root ignores permission bits; drop the capabilities that let it.
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a directory read-only")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    env = {"LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    import subprocess

    from tests.reliability.crashkit import cli_env

    proc = subprocess.run(
        [*prefix, *luigi_argv(case.spec["task"], [*_args(case), *extra], case.results)],
        cwd=case.folder,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_corpus_is_large_enough() -> None:
    """The issue asks for at least 30 bad inputs."""
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", CASES)
def test_bad_input_fails_cleanly(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """One clear error, exit != 0, no traceback, nothing complete, no sentinel."""
    spec = yaml.safe_load((CASES_DIR / name / "case.yaml").read_text())
    fixture = "trained_tf" if spec.get("framework") == "tensorflow" else "trained"
    case = _prepare(name, tmp_path, lambda: request.getfixturevalue(fixture))
    before = _successes(case.results)
    existed = case.results.exists()
    code, out = _run(case)
    assert code != 0, out
    error = case.spec["error"]
    assert out.count(f"{error}:") == 1, f"expected one {error} line:\n{out}"
    for fragment in case.spec["expect"]:
        assert case.subst(fragment) in out, f"missing {fragment!r} in:\n{out}"
    assert "Traceback" not in out, out
    assert _successes(case.results) == before, "a failed run marked something complete"
    if case.spec["kind"] == "config":
        assert case.results.exists() == existed, "a config error created the results directory"
    assert not case.sentinel.exists(), "the attack ran"
    assert not list(tmp_path.parent.glob("**/evil*")), "a name escaped the results directory"


def test_debug_log_level_shows_the_traceback(tmp_path: Path) -> None:
    """``--log-level DEBUG`` keeps the traceback that the normal run hides."""
    case = _prepare("data_with_nans", tmp_path, lambda: Path())
    code, out = _run(case, ("--log-level", "DEBUG"))
    assert code != 0
    assert "Traceback" in out and "DataError" in out, out


def test_results_dir_untouched_for_sibling_case(tmp_path: Path) -> None:
    """Sanity: a good config in a case folder does succeed (the harness itself works)."""
    folder = tmp_path / "good"
    folder.mkdir()
    (folder / "data.yaml").write_text("loader: moons\nparams: {n_samples: 60}\n")
    code, out = run_luigi_to_end(
        "PrepareData",
        ["--data-config", str(folder / "data.yaml")],
        tmp_path / "results",
        tmp_path / "good.log",
    )
    assert code == 0, out
    assert len(_successes(tmp_path / "results")) == 1


@pytest.mark.tensorflow
def test_keras_lambda_archive_really_is_hostile(tmp_path: Path) -> None:
    """Control for ``keras_lambda_archive``: loaded unsafely, the archive runs its code."""
    import subprocess
    import sys

    sentinel, archive = tmp_path / "SENTINEL", tmp_path / "hostile.keras"
    subprocess.run(
        [sys.executable, "-c", _KERAS_LAMBDA, str(sentinel), str(archive)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    sentinel.unlink(missing_ok=True)
    unsafe = (
        "import sys, numpy, keras\n"
        "model = keras.saving.load_model(sys.argv[1], safe_mode=False)\n"
        "model(numpy.zeros((1, 2), 'float32'))\n"
    )
    subprocess.run(
        [sys.executable, "-c", unsafe, str(archive)], check=True, capture_output=True, timeout=300
    )
    assert sentinel.exists()
