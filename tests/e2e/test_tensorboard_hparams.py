"""TensorBoard HParams: every experiment is a session of the dashboard, read back with
TensorBoard's own event reader and the hparams plugin's own backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tasks.store.metrics_log import read_metrics
from tasks.store.names import METRICS_FILE
from tasks.store.records import BestRecord
from tests.cli.forge_support import FRAMEWORK_PARAMS, Trained, listing, luigi_env, trained
from tests.support import REPO

pytestmark = pytest.mark.slow  # trains real experiments through the luigi command


@pytest.fixture(scope="module")
def exps(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained(tmp_path_factory)


def _dashboard(root: Path) -> dict[str, Any]:
    """What the HParams dashboard shows for ``tensorboard --logdir root``: the session
    groups with their hyperparameters and metric values, and the experiment's columns."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    multiplexer = pem.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(root))
    tb = base_plugin.TBContext(logdir=str(root), multiplexer=multiplexer, data_provider=provider)
    ctx = backend_context.Context(tb)
    request_ctx = context.RequestContext()
    experiment = ctx.experiment_from_metadata(
        request_ctx,
        "",
        True,
        ctx.hparams_metadata(request_ctx, ""),
        ctx.hparams_from_data_provider(request_ctx, "", None),
    )
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=1000,
        include_metrics=True,
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS],
    )
    groups = list_session_groups.Handler(request_ctx, ctx, "", request).run().session_groups
    sessions = {}
    for group in groups:
        hparams = {}
        for key, value in group.hparams.items():
            hparams[key] = getattr(value, value.WhichOneof("kind"))
        metrics = {m.name.tag: m.value for m in group.metric_values}
        sessions[group.name] = {"hparams": hparams, "metrics": metrics}
    return {
        "sessions": sessions,
        "hparams": {h.name for h in experiment.hparam_infos},
        "metrics": {m.name.tag for m in experiment.metric_infos},
    }


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_each_experiment_is_an_hparams_session(exps: Trained, framework: str) -> None:
    dashboard = _dashboard(exps.root)
    records = listing(exps.root)
    assert set(dashboard["sessions"]) == {r["path"] for r in records}
    mine = [r for r in records if r["framework"] == framework]
    assert mine
    for record in mine:
        session = dashboard["sessions"][record["path"]]
        config = record["config"]
        assert isinstance(config, dict)
        hp = session["hparams"]
        assert hp["model.framework"] == framework
        assert hp["train.epochs"] == config["train"]["epochs"] == 2
        assert hp["model.params.hidden"] == json.dumps(
            config["model"]["params"]["hidden"], separators=(",", ":")
        )
        folder = exps.root / record["path"]
        last = read_metrics(folder / METRICS_FILE)[-1]
        best = BestRecord.read(folder).require()
        metrics = session["metrics"]
        assert metrics[f"best/{best.monitor}"] == pytest.approx(best.value, rel=1e-6)
        assert metrics["best/epoch"] == best.epoch
        for name, value in last.items():
            if name != "epoch":
                assert metrics[f"final/{name}"] == pytest.approx(value, rel=1e-6)
    # The hidden sizes that tell the torch experiments apart are a dashboard column.
    assert "model.params.hidden" in dashboard["hparams"]
    assert {"best/val_loss", "final/val_loss", "val_loss"} <= dashboard["metrics"]


def test_writing_hparams_imports_no_framework(exps: Trained, tmp_path: Path) -> None:
    folder = exps.root / str(listing(exps.root)[0]["path"])
    code = (
        "import sys, yaml\n"
        "from pathlib import Path\n"
        "from tasks.hparams import write_hparams\n"
        f"folder = Path({str(folder)!r})\n"
        "config = yaml.safe_load((folder / 'config.yaml').read_text())\n"
        f"tags = write_hparams(folder, Path({str(tmp_path / 'tb')!r}), config,"
        " folder / 'metrics.csv')\n"
        "assert 'best/val_loss' in tags, tags\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=luigi_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*.hparams"))) == 1
