"""A results folder from somebody else cannot run code, or read or write files outside it.

Each attack is shown twice: the crafted file does its harm when read the plain way (with
h5py, ``torch.export.load``, PyYAML) in a throwaway folder — the control — and Forge
refuses the same file with one clear error while the harm never happens.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from pipelines import LoadTrained
from tasks.data.h5safe import open_checked
from tasks.data.h5store import BatchStream, read_meta, read_split
from tasks.errors import CorruptArtifactError
from tests.support import CONFIGS, MODEL_CONFIGS, REPO, experiment_dirs, run_luigi

pytestmark = pytest.mark.slow  # trains real experiments through the luigi command

SECRET = b"TOP-SECRET-BYTES-0123456789abcdef"
BOMB = "\n".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + BOMB + "\n"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny torch experiment on moons, trained and evaluated by the real luigi command."""
    results = tmp_path_factory.mktemp("hostile") / "results"
    result = run_luigi(
        "Evaluate", "--data-config", CONFIGS / "data" / "moons.yaml",
        "--model-config", MODEL_CONFIGS["torch"], "--overrides", "train.epochs=1",
        results_dir=results,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    (found,) = experiment_dirs(results)
    return found


def copy_experiment(source: Path, tmp_path: Path) -> Path:
    root = source.parents[2]
    shutil.copytree(root, tmp_path / "results")
    return tmp_path / "results" / source.relative_to(root)


# -- HDF5 files pointing outside themselves ------------------------------------------------


def _external_storage(path: Path, secret: Path) -> None:
    with h5py.File(path, "w") as fh:
        fh.create_dataset(
            "test/x", shape=(len(SECRET),), dtype="u1", external=[(secret, 0, len(SECRET))]
        )


def _virtual(path: Path, secret: Path) -> None:
    source = secret.with_suffix(".h5")
    with h5py.File(source, "w") as fh:
        fh["data"] = np.frombuffer(SECRET, dtype="u1")
    layout = h5py.VirtualLayout(shape=(len(SECRET),), dtype="u1")
    layout[:] = h5py.VirtualSource(source, "data", shape=(len(SECRET),))
    with h5py.File(path, "w") as fh:
        fh.create_virtual_dataset("test/x", layout)


def _external_link(path: Path, secret: Path) -> None:
    source = secret.with_suffix(".h5")
    with h5py.File(source, "w") as fh:
        fh["data"] = np.frombuffer(SECRET, dtype="u1")
    with h5py.File(path, "w") as fh:
        fh.create_group("test")["x"] = h5py.ExternalLink(str(source), "data")


def _soft_link(path: Path, secret: Path) -> None:
    with h5py.File(path, "w") as fh:
        fh["hidden"] = np.frombuffer(SECRET, dtype="u1")
        fh.create_group("test")["x"] = h5py.SoftLink("/hidden")


H5_ATTACKS: dict[str, Callable[[Path, Path], None]] = {
    "external_storage": _external_storage,
    "virtual_dataset": _virtual,
    "external_link": _external_link,
    "soft_link": _soft_link,
}


@pytest.mark.parametrize("attack", list(H5_ATTACKS))
def test_hdf5_pointing_outside_is_refused(attack: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.bin"
    secret.write_bytes(SECRET)
    path = tmp_path / "folder" / "data.h5"
    path.parent.mkdir()
    H5_ATTACKS[attack](path, secret)
    # Control: plain h5py hands out the bytes stored somewhere else.
    with h5py.File(path, "r") as fh:
        assert bytes(np.asarray(fh["test/x"])) == SECRET
    for read in (
        lambda: read_split(path, "test"),
        lambda: BatchStream(path, "test", 4),
        lambda: read_meta(path),
        lambda: open_checked(path),
    ):
        with pytest.raises(CorruptArtifactError, match="HDF5 files that point outside"):
            read()


def test_stored_data_and_predictions_with_external_storage_are_refused(
    experiment: Path, tmp_path: Path
) -> None:
    folder = copy_experiment(experiment, tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    exp = LoadTrained(folder)
    data_file, (evaluation,) = exp.data_file, exp.evaluations
    predictions = evaluation.directory / "predictions.h5"
    for path, group in ((data_file, "test/x"), (predictions, "outputs/output")):
        path.unlink()
        with h5py.File(path, "w") as fh:
            fh.create_dataset(
                group, shape=(len(SECRET),), dtype="u1", external=[(secret, 0, len(SECRET))]
            )
    with pytest.raises(CorruptArtifactError, match="external storage"):
        exp.data("test")
    with pytest.raises(CorruptArtifactError, match="external storage"):
        evaluation.predictions()


# -- torch.export archives -----------------------------------------------------------------


def _crafted_pt2(path: Path, marker: Path) -> None:
    """A ``.pt2`` of a tiny module whose shape expression runs a command when loaded."""
    import torch

    module = torch.nn.Linear(3, 2)
    example = (torch.zeros(2, 3),)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, example, dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    with zipfile.ZipFile(buffer) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    (name,) = [n for n in members if n.endswith("models/model.json")]
    text = members[name].decode()
    payload = f"__import__('os').system('touch {marker}')"
    assert "Symbol('s" in text
    members[name] = text.replace(
        "Symbol('s", json.dumps(payload)[1:-1] + " + Symbol('s", 1
    ).encode()
    with zipfile.ZipFile(path, "w") as dst:
        for member, data in members.items():
            dst.writestr(member, data)


def test_torch_export_archive_is_refused(experiment: Path, tmp_path: Path) -> None:
    folder = copy_experiment(experiment, tmp_path)
    control_marker, marker = tmp_path / "control-marker", tmp_path / "marker"
    control = tmp_path / "control.pt2"
    _crafted_pt2(control, control_marker)
    code = (
        f"import torch\ntry:\n    torch.export.load({str(control)!r})\nexcept Exception:\n    pass"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300, check=False)
    assert control_marker.exists(), "control: plain torch.export.load runs the payload"
    _crafted_pt2(folder / "model" / "model.pt2", marker)
    run = json.loads((folder / "run.json").read_text())
    run["export"]["file"] = "model/model.pt2"
    (folder / "run.json").write_text(json.dumps(run))
    with pytest.raises(CorruptArtifactError, match=r"model\.pt2.*no longer loads"):
        LoadTrained(folder, code_free=True).model  # noqa: B018
    assert not marker.exists()


def test_pt2_renamed_to_onnx_is_refused(experiment: Path, tmp_path: Path) -> None:
    folder = copy_experiment(experiment, tmp_path)
    marker = tmp_path / "marker"
    _crafted_pt2(folder / "model" / "model.onnx", marker)
    with pytest.raises(CorruptArtifactError, match="model.onnx"):
        LoadTrained(folder, code_free=True).model  # noqa: B018
    assert not marker.exists()


def test_missing_builder_is_an_error_not_a_silent_fallback(
    experiment: Path, tmp_path: Path
) -> None:
    folder = copy_experiment(experiment, tmp_path)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["model"]["builder"] = "no_such_builder"
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    code = f"from pipelines import LoadTrained; LoadTrained({str(folder)!r}).model"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode != 0
    assert "ExperimentError" in proc.stderr and "code_free=True" in proc.stderr, proc.stderr
    x, _ = LoadTrained(folder).data("test")
    assert LoadTrained(folder, code_free=True).predict(x).shape == (len(x), 2)


# -- stored config.yaml ---------------------------------------------------------------------


def test_alias_bomb_in_stored_config_is_reported_damaged(experiment: Path, tmp_path: Path) -> None:
    folder = copy_experiment(experiment, tmp_path)
    results = tmp_path / "results"
    (folder / "config.yaml").write_text(BOMB)
    # Control: a plain safe loader accepts it, and anything walking the result (flattening
    # it for the listing, hashing, dumping JSON) would visit 9**9 leaves.
    plain = yaml.safe_load(BOMB)
    sizes: dict[int, int] = {}

    def leaves(node: object) -> int:
        if not isinstance(node, list):
            return 1
        if id(node) not in sizes:
            sizes[id(node)] = sum(leaves(item) for item in node)
        return sizes[id(node)]

    assert leaves(plain["i"]) == 9**9
    forge = [sys.executable, "-m", "tasks.cli.app"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    listed = subprocess.run(
        [*forge, "ls", str(results), "--rebuild", "--json"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    shown = subprocess.run(
        [*forge, "show", str(folder), "--results-dir", str(results)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert listed.returncode == 0, listed.stderr
    (record,) = json.loads(listed.stdout)
    assert record["status"] == "damaged"
    assert shown.returncode == 0, shown.stderr
    assert "damaged" in shown.stdout
    assert elapsed < 30  # two interpreter starts; the bomb itself would take gigabytes
