"""No-op status of N finished experiments vs a plain Luigi 4-task chain with the same N.

N experiments (distinct ``train.seed``, shared data and model) are synthesized as finished:
each step's directory is the one :func:`tasks.base.resolve_spec` computes, with its digest
and ``_SUCCESS`` marker, exactly as a real run leaves them. The timed work, in this
process, is building a wrapper that requires all N ``Evaluate`` tasks and running
``luigi.build`` on it; the baseline does the same over N plain-Luigi chains
``A → B → C → D`` whose outputs all exist. Forge's in-process config cache and Luigi's
instance cache are cleared before every repetition, as in a fresh process.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import luigi

from benchmarks._configs import write_configs
from benchmarks.harness import Target, interleaved, median, row, timed

__all__ = ["run"]

TARGET = Target("<=", 1.5)


class _ChainStep(luigi.Task):
    """One step of the plain-Luigi reference chain: a marker file per (i, step)."""

    root = luigi.Parameter()
    i = luigi.IntParameter()
    step = luigi.IntParameter()

    def requires(self) -> list[_ChainStep]:
        return [] if self.step == 0 else [_ChainStep(root=self.root, i=self.i, step=self.step - 1)]

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(f"{self.root}/{self.i}/{self.step}/_SUCCESS")


class _AllChains(luigi.WrapperTask):
    root = luigi.Parameter()
    n = luigi.IntParameter()

    def requires(self) -> list[_ChainStep]:
        return [_ChainStep(root=self.root, i=i, step=3) for i in range(self.n)]


class _AllEvaluates(luigi.WrapperTask):
    configs = luigi.DictParameter()
    results = luigi.Parameter()
    n = luigi.IntParameter()

    def requires(self) -> list[Any]:
        from tasks import Evaluate

        c = self.configs
        return [
            Evaluate(
                data_config=c["data"],
                model_config=c["model"],
                train_config=c["train"],
                eval_config=c["eval"],
                overrides=f"train.seed={i}",
                results_dir=self.results,
            )
            for i in range(self.n)
        ]


def _synthesize(configs: dict[str, str], results: Path, n: int) -> None:
    from tasks.base import resolve_spec
    from tasks.stages import SECTIONS
    from tasks.store.layout import claim_dir
    from tasks.store.names import SUCCESS

    for i in range(n):
        spec = resolve_spec(SECTIONS, dict(configs), f"train.seed={i}", results)
        for level in SECTIONS:
            claim_dir(spec.dirs[level], spec[level].digest)
            (spec.dirs[level] / SUCCESS).touch()


def _chain_outputs(root: Path, n: int) -> None:
    for i in range(n):
        for step in range(4):
            (root / str(i) / str(step)).mkdir(parents=True, exist_ok=True)
            (root / str(i) / str(step) / "_SUCCESS").touch()


def _build(task: luigi.Task) -> None:
    result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="WARNING")
    if result.status.name not in ("SUCCESS", "SUCCESS_WITH_RETRY"):
        raise RuntimeError(f"no-op build of {task} did not succeed: {result.summary_text}")
    if result.worker.run_succeeded is False:
        raise RuntimeError(f"no-op build of {task} failed")


def run(quick: bool) -> list[dict[str, Any]]:
    """Synthesize N finished experiments and chains, then time both no-op builds."""
    from tasks.config.resolve import clear_resolution_memo

    n, repeats = (100, 3) if quick else (1000, 7)
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        configs = {k: str(v) for k, v in write_configs(Path(tmp) / "configs").items()}
        results = Path(tmp) / "results"
        chains = Path(tmp) / "chains"
        _synthesize(configs, results, n)
        _chain_outputs(chains, n)
        logging.getLogger("luigi-interface").setLevel(logging.WARNING)

        def forge_side() -> float:
            clear_resolution_memo()
            luigi.task_register.Register.clear_instance_cache()
            return timed(lambda: _build(_AllEvaluates(configs=configs, results=str(results), n=n)))

        def plain_luigi() -> float:
            luigi.task_register.Register.clear_instance_cache()
            return timed(lambda: _build(_AllChains(root=str(chains), n=n)))

        cand, base = interleaved(forge_side, plain_luigi, repeats)
    return [
        row(
            f"no-op status, N={n}",
            "wall s",
            cand,
            base,
            TARGET,
            note="luigi.build of a wrapper requiring N finished Evaluates vs N finished plain "
            f"4-task chains, in-process; {1000 * (median(cand) - median(base)) / n:.2f} ms "
            "extra per experiment",
        )
    ]
