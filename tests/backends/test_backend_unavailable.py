"""A model config naming a framework that is not installed fails early with one clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import CONFIGS, run_luigi


@pytest.mark.parametrize(
    ("module", "model_config", "extra"),
    [
        pytest.param("tensorflow", "mlp_tf.yaml", "tensorflow", id="tensorflow"),
        pytest.param("torch", "mlp_torch.yaml", "torch", id="torch"),
    ],
)
def test_missing_framework_fails_before_anything_is_created(
    module: str, model_config: str, extra: str, tmp_path: Path
) -> None:
    # A `None` entry in sys.modules is how Python marks a module unimportable: find_spec
    # returns None and `import` raises ImportError, exactly as when it is not installed.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    results = tmp_path / "results"
    result = run_luigi(
        "Evaluate",
        "--data-config",
        CONFIGS / "data" / "digits.yaml",
        "--model-config",
        CONFIGS / "model" / model_config,
        results_dir=results,
        env={"PYTHONPATH": str(shim)},
    )
    assert result.returncode != 0, result.output
    assert f"asks for framework {extra!r}, which is not installed" in result.output
    assert f"pip install -e .[{extra}]" in result.output
    assert model_config in result.output
    assert not results.exists()
