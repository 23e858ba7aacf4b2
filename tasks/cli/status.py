"""``forge status``: which steps are done, which would run, and why something is stale.

Two questions are answered from the files alone, without running Luigi:

* **config changed**: the configs now resolve to another folder than before. For a step
  that would run, the most recent sibling folder of the same config name is compared with
  the newly resolved config, key by key.
* **model code changed**: the source of the builder (or loader/objective) registered now
  differs from the fingerprint ``run.json`` recorded at training time. Luigi still counts
  such an experiment as done (completion is its ``_SUCCESS`` marker), hence "stale".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.cli.table import format_value
from tasks.errors import ForgeError
from tasks.stages import SECTIONS, TRAIN_SECTIONS, stage
from tasks.store.drift import code_drift, live_lookup
from tasks.store.lock import lock_held
from tasks.store.names import CONFIG_FILE, DIGEST_FILE, EVAL_DIR, PARAMS_FILE, SUCCESS
from tasks.store.records import ParamsRecord, RunRecord
from tasks.store.summary import experiment_damage, flatten, read_config, step_name

__all__ = ["Step", "code_changes", "render_steps", "steps_for_configs", "steps_for_experiment"]


@dataclass
class Step:
    """One pipeline step of an experiment and what a run would do with it."""

    level: str
    directory: Path
    state: str  # done | running | failed | incomplete | stale | damaged | would run
    reasons: list[str] = field(default_factory=list)


def _changes(old: dict[str, Any], new: dict[str, Any], section: str) -> list[str]:
    flat_old, flat_new = flatten(old, f"{section}."), flatten(new, f"{section}.")
    keys = list(flat_old) + [k for k in flat_new if k not in flat_old]
    absent = "(absent)"
    return [
        f"{k} {format_value(flat_old.get(k, absent))} → {format_value(flat_new.get(k, absent))}"
        for k in keys
        if flat_old.get(k, absent) != flat_new.get(k, absent)
    ]


def _stored_config(directory: Path, level: str) -> dict[str, Any]:
    config = read_config(directory / stage(level).stored_config)
    return config.get("train", {}) if level == "train" else config


def _why_missing(directory: Path, level: str, config: dict[str, Any]) -> list[str]:
    parent = directory.parent
    if not parent.is_dir():
        return ["upstream step would run first"]
    name = step_name(directory.name)
    siblings = [
        p
        for p in parent.iterdir()
        if p.is_dir()
        and p != directory
        and step_name(p.name) == name
        and (p / DIGEST_FILE).exists()
        and (p / stage(level).stored_config).exists()
    ]
    if not siblings:
        return [f"not run yet (no earlier {level} step named {name!r} here)"]
    # The closest earlier run explains best what changed; look at the 50 most recent.
    recent = sorted(siblings, key=lambda p: p.stat().st_mtime, reverse=True)[:50]
    compared = [(p, _changes(_stored_config(p, level), config, level)) for p in recent]
    latest, changes = min(compared, key=lambda item: len(item[1]))
    shown = "; ".join(changes[:6]) + ("; …" if len(changes) > 6 else "")
    return [f"config changed since {latest.name}: {shown or 'derived values differ'}"]


def code_changes(code: dict[str, Any], framework: str | None) -> list[str]:
    """Compare ``run.json``'s code fingerprints with the currently registered functions."""
    drifts = code_drift(code or {}, live_lookup(framework))
    return [d.describe() for d in drifts if d.kind != "unverifiable"]


def _state(directory: Path, level: str) -> tuple[str, list[str]]:
    if (directory / SUCCESS).is_file():
        return "done", []
    if lock_held(directory):
        return "running", ["another process holds its lock"]
    if not directory.exists():
        return "would run", []
    run = RunRecord.read(directory) if level == "train" else RunRecord()
    if run.status == "failed":
        return "failed", [f"last run failed: {run.error}; it would run again"]
    return "incomplete", ["a run stopped half-way; it would run again (resuming where it can)"]


def _train_code(step: Step, framework: str | None) -> None:
    run = RunRecord.read(step.directory)
    if not run.ok:
        return
    reasons = code_changes(run.code, framework)
    if reasons:
        step.state = "stale"
        step.reasons += reasons + [
            "Luigi still counts it as done; `forge rm` it and rerun to retrain with this code"
        ]


def steps_for_configs(
    paths: dict[str, str | None], overrides: str, results_dir: Path
) -> list[Step]:
    """Steps of the experiment that these configs (as given to the Luigi tasks) describe.

    Raises:
        ConfigError: a config or override is invalid (as the Luigi tasks would report).
    """
    from tasks.base import resolve_spec

    levels = SECTIONS
    spec = resolve_spec(levels, paths, overrides, results_dir)
    steps = []
    upstream_runs = False
    for level in levels:
        directory = spec.dirs[level]
        state, reasons = _state(directory, level)
        if state == "would run":
            reasons = _why_missing(directory, level, spec[level].config)
        elif state == "done" and upstream_runs:
            state, reasons = "would run", ["upstream step would run first"]
        step = Step(level, directory, state, reasons)
        if level == "train" and state == "done":
            _train_code(step, spec["model"].config.get("framework"))
        upstream_runs = upstream_runs or state not in ("done", "stale")
        steps.append(step)
    return steps


def steps_for_experiment(directory: Path) -> tuple[list[Step], list[str]]:
    """Steps of a stored experiment, and notes on whether its configs changed since.

    The experiment's ``params.json`` names the config files and overrides it was made
    from; they are resolved again (paths relative to the current directory) and compared.
    """
    from tasks.base import resolve_spec

    config = read_config(directory / CONFIG_FILE)
    model = config.get("model")
    framework = model.get("framework") if isinstance(model, dict) else None
    steps = []
    for level, path in (
        ("data", directory.parent.parent),
        ("model", directory.parent),
        ("train", directory),
    ):
        state, reasons = _state(path, level)
        steps.append(Step(level, path, state, reasons))
    damage = experiment_damage(directory) if steps[-1].state == "done" else None
    if damage is not None:
        steps[-1].state = "damaged"
        steps[-1].reasons.append(f"{damage}; `forge rm` it and rerun, or restore the files")
    elif steps[-1].state == "done":
        _train_code(steps[-1], framework)
    evals = sorted(p for p in (directory / EVAL_DIR).glob("*") if (p / DIGEST_FILE).exists())
    for path in evals:
        state, reasons = _state(path, "eval")
        steps.append(Step("eval", path, state, reasons))
    notes = []
    params = ParamsRecord.read(directory)
    if params.damage is not None:
        return steps, [
            f"{PARAMS_FILE} unusable ({params.damage}): cannot tell whether its configs changed"
        ]
    paths = {lv: params.configs.get(stage(lv).config_param) or None for lv in TRAIN_SECTIONS}
    try:
        spec = resolve_spec(TRAIN_SECTIONS, paths, params.overrides, directory.parents[2])
    except (ForgeError, OSError) as err:
        return steps, [f"its config files cannot be resolved now ({err})"]
    if spec.dirs["train"].resolve() == directory.resolve():
        notes.append("config unchanged: its config files still resolve to this experiment")
    else:
        changes: list[str] = []
        for level in TRAIN_SECTIONS:
            changes += _changes(config.get(level) or {}, spec[level].config, level)
        shown = "; ".join(changes[:6]) + ("; …" if len(changes) > 6 else "")
        notes.append(
            f"config changed: its config files now give {shown or 'a different identity'}; "
            "rerunning them would make a new experiment (this one is kept)"
        )
    return steps, notes


def render_steps(steps: list[Step], root: Path) -> str:
    """The table ``forge status`` prints: task, state, folder, and indented reasons."""
    lines = []
    for step in steps:
        try:
            shown = str(step.directory.relative_to(root))
        except ValueError:
            shown = str(step.directory)
        lines.append(f"  {stage(step.level).task:<12} {step.state:<11} {shown}")
        lines.extend(f"      why: {reason}" for reason in step.reasons)
    return "\n".join(lines) + "\n"
