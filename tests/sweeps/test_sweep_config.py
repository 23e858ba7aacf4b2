"""Sweep config validation and expansion: grids, zips, errors naming the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.config.sweep import expand_sweep, load_sweep_config
from tasks.errors import ConfigError
from tests.support import CONFIGS, write_yaml

DATA = CONFIGS / "data" / "moons.yaml"
MODEL = CONFIGS / "model" / "mlp_torch.yaml"


def _sweep(tmp_path: Path, body: str) -> Path:
    return write_yaml(tmp_path / "sweep.yaml", f"data: [{DATA}]\nmodel: [{MODEL}]\n{body}")


def test_grid_is_cartesian_and_zip_walks_in_lockstep(tmp_path: Path) -> None:
    path = _sweep(
        tmp_path,
        "grid: {model.params.hidden: [[8], [16], [32]], train.optimizer.lr: [0.1, 0.01]}\n"
        "zip: {train.seed: [0, 1], model.seed: [5, 6]}\n",
    )
    experiments = expand_sweep(load_sweep_config(path), path)
    assert len(experiments) == 3 * 2 * 2
    pairs = {(dict(e.values)["train.seed"], dict(e.values)["model.seed"]) for e in experiments}
    assert pairs == {(0, 5), (1, 6)}
    assert len({e.overrides for e in experiments}) == 12


def test_values_round_trip_through_override_parsing(tmp_path: Path) -> None:
    from tasks.config.resolve import parse_overrides

    path = _sweep(
        tmp_path, "grid: {model.params.hidden: [[64, 32]], model.params.activation: [tanh]}\n"
    )
    (experiment,) = expand_sweep(load_sweep_config(path), path)
    parsed = parse_overrides(experiment.overrides)
    assert parsed["model"] == {"params.hidden": [64, 32], "params.activation": "tanh"}


def test_duplicate_combinations_are_run_once(tmp_path: Path) -> None:
    path = _sweep(tmp_path, "grid: {train.seed: [1, 1, 2]}\n")
    assert len(expand_sweep(load_sweep_config(path), path)) == 2


@pytest.mark.parametrize(
    ("body", "match"),
    [
        pytest.param(
            "grdi: {train.seed: [1]}\n",
            r"unknown key 'grdi'.*did you mean 'grid'",
            id="unknown-key",
        ),
        pytest.param(
            "grid: {seed: [1]}\n", r"grid.*section\.dotted\.key", id="key-without-section"
        ),
        pytest.param("grid: {optim.lr: [1]}\n", r"section\.dotted\.key", id="unknown-section"),
        pytest.param("grid: {train.seed: 3}\n", r"grid\.train\.seed", id="not-a-list"),
        pytest.param("grid: {train.seed: []}\n", r"empty", id="empty-list"),
        pytest.param(
            "zip: {train.seed: [1, 2], model.seed: [1]}\n", r"equal lengths", id="zip-lengths"
        ),
        pytest.param(
            "grid: {train.seed: [1]}\nzip: {train.seed: [2]}\n", r"both grid and zip", id="twice"
        ),
        pytest.param("train: [nowhere.yaml]\n", r"key 'train'.*nowhere\.yaml", id="missing-file"),
    ],
)
def test_invalid_sweeps_name_the_file_and_key(tmp_path: Path, body: str, match: str) -> None:
    path = _sweep(tmp_path, body)
    with pytest.raises(ConfigError, match=match) as info:
        expand_sweep(load_sweep_config(path), path)
    assert str(path) in str(info.value)


def test_unknown_config_key_in_grid_fails_before_any_work(tmp_path: Path) -> None:
    from tasks.sweep import load_plan

    path = _sweep(tmp_path, "grid: {train.optimizer.lrr: [0.1]}\n")
    results = tmp_path / "results"
    with pytest.raises(ConfigError, match=r"lrr.*did you mean 'lr'"):
        load_plan(str(path), results)
    assert not results.exists()


def test_example_sweeps_are_valid() -> None:
    for path in sorted((CONFIGS / "sweeps").glob("*.yaml")):
        assert expand_sweep(load_sweep_config(path), path)


_SEARCH = (
    "search:\n  metric: val_accuracy\n  direction: maximize\n  trials: 4\n{extra}  space:\n{space}"
)


def _search(tmp_path: Path, space: str, extra: str = "", body: str = "") -> Path:
    return _sweep(tmp_path, body + _SEARCH.format(extra=extra, space=space))


def test_search_space_types_ints_floats_and_choices(tmp_path: Path) -> None:
    path = _search(
        tmp_path,
        "    train.optimizer.lr: {low: 0.00001, high: 0.1, log: true}\n"
        "    train.batch_size: {low: 16, high: 64}\n"
        "    model.params.hidden: {choices: [[64], [256, 128]]}\n",
    )
    search = load_sweep_config(path).search
    assert search is not None
    lr, batch, hidden = search.space.values()
    assert not lr.integer and lr.log  # type: ignore[union-attr]
    assert batch.integer and batch.grid() == list(range(16, 65))  # type: ignore[union-attr]
    assert hidden.choices == [[64], [256, 128]]  # type: ignore[union-attr]
    assert "trials" not in search.identity()


@pytest.mark.parametrize(
    ("space", "extra", "body", "match"),
    [
        pytest.param("    train.seed: {low: 3, high: 1}\n", "", "", r"below", id="low-above-high"),
        pytest.param(
            "    train.optimizer.lr: {low: 0, high: 1, log: true}\n", "", "", r"low > 0", id="log-0"
        ),
        pytest.param("    seed: {low: 1, high: 2}\n", "", "", r"section\.dotted", id="bad-key"),
        pytest.param("    train.seed: {choices: []}\n", "", "", r"choices", id="no-choices"),
        pytest.param(
            "    train.seed: {low: true, high: 3}\n", "", "", r"low must be a number", id="bool-low"
        ),
        pytest.param(
            "    train.batch_size: {low: 16, high: 64, step: 0.5}\n",
            "",
            "",
            r"whole step",
            id="integer-range-fraction-step",
        ),
        pytest.param(
            "    train.optimizer.lr: {low: 0.001, high: .inf}\n",
            "",
            "",
            r"finite",
            id="infinite-high",
        ),
        pytest.param(
            "    model.params.dropout: {low: 0.0, high: 0.5, step: 0.3}\n",
            "",
            "",
            r"does not divide",
            id="step-past-high",
        ),
        pytest.param(
            "    train.optimizer.lr: {low: 0.001, high: 0.1}\n"
            "    train.optimizer: {choices: [{name: sgd, lr: 0.5}]}\n",
            "",
            "",
            r"lies inside key 'train\.optimizer'",
            id="key-inside-another",
        ),
        pytest.param(
            "    train.optimizer.lr: {low: 0.1, high: 0.2}\n",
            "  sampler: grid\n",
            "",
            r"grid sampler needs discrete",
            id="grid-float",
        ),
        pytest.param(
            "    train.seed: {low: 1, high: 2}\n",
            "  sampler: bayes\n",
            "",
            r"search\.sampler",
            id="unknown-sampler",
        ),
        pytest.param(
            "    train.seed: {low: 1, high: 2}\n",
            "",
            "grid: {train.epochs: [1, 2]}\n",
            r"cannot be combined",
            id="search-and-grid",
        ),
    ],
)
def test_invalid_searches_name_the_file_and_key(
    tmp_path: Path, space: str, extra: str, body: str, match: str
) -> None:
    path = _search(tmp_path, space, extra, body)
    with pytest.raises(ConfigError, match=match) as info:
        load_sweep_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("space", "match"),
    [
        pytest.param("    train.optimizer.lrr: {low: 0.1, high: 0.2}\n", r"search\.space.*lrr",
                     id="no-such-key"),
        pytest.param("    train.batch_size: {choices: [128, 12.5]}\n",
                     r"search\.space' \(at train\.batch_size=12\.5\).*batch_size",
                     id="a-later-choice-the-config-refuses"),
        pytest.param("    train.batch_size: {low: 16.0, high: 64.0}\n",
                     r"search\.space' \(at train\.batch_size=.*fractional",
                     id="float-range-over-an-integer-key"),
    ],
)  # fmt: skip
def test_search_values_the_configs_refuse_fail_before_any_work(
    tmp_path: Path, space: str, match: str
) -> None:
    """Every key is tried in the resolved configs at each choice, at both ends of a
    range, and inside a continuous one, before any work."""
    from tasks.sweep import load_plan

    path = _search(tmp_path, space)
    results = tmp_path / "results"
    with pytest.raises(ConfigError, match=match) as info:
        load_plan(str(path), results)
    assert str(path) in str(info.value)
    assert not results.exists()


@pytest.mark.parametrize(
    ("space", "extra", "expected"),
    [
        ("    train.seed: {choices: []}\n", "", "key 'search.space.train.seed.choices'"),
        ("    train.seed: {low: 1, hihg: 2}\n", "",
         "key 'search.space.train.seed.high' is missing"),
        ("    train.seed: {low: 1, high: 2}\n", "  n_jobs: 3\n",
         "unknown key 'search.n_jobs' Allowed keys here: direction, metric"),
    ],
)  # fmt: skip
def test_search_errors_speak_of_the_users_keys_only(
    tmp_path: Path, space: str, extra: str, expected: str
) -> None:
    """Not of the schema's inner names (a union's branches, validator wrappers), and
    never with an empty list of allowed keys."""
    path = _search(tmp_path, space, extra)
    with pytest.raises(ConfigError) as info:
        load_sweep_config(path)
    message = str(info.value)
    assert expected in message
    for leaked in ("function-after", "Range", "Choices", "Allowed keys here: \n"):
        assert leaked not in message + "\n", message
