"""Run options: command line > [tool.flowcheck] > environment > default, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowcheck.options import OPTIONS, OptionError, read_pyproject, resolve


def test_command_line_beats_pyproject_beats_environment_beats_default():
    env = {"FLOWCHECK_DTYPE": "bf16", "FLOWCHECK_MAX_SAMPLES": "7", "FLOWCHECK_SEED": "3"}
    pyproject = {"max-samples": 20, "seed": 5}
    opts = resolve({"seed": 11}, pyproject, env)
    assert opts.seed == 11 and opts.sources["seed"] == "command line"
    assert opts.max_samples == 20 and opts.sources["max_samples"] == "pyproject.toml"
    assert opts.dtype == "bfloat16" and opts.sources["dtype"] == "environment"
    assert opts.device == "cpu" and opts.sources["device"] == "default"
    assert opts.models == ["tiny-video-ft", "tiny-image"]


def test_lists_datasets_and_shards_parse_from_every_source():
    opts = resolve(
        {"models": ["a", "b,c"], "data": ["tvbench=/d/tv", "synthetic"]},
        {"shard": "1/4"},
        {"FLOWCHECK_TASKS": "object_count, moving_direction"},
    )
    assert opts.models == ["a", "b", "c"]
    assert opts.data == {"tvbench": "/d/tv", "synthetic": None}
    assert opts.shard == (1, 4)
    assert opts.tasks == ["object_count", "moving_direction"]
    assert resolve({}, {"data": {"tomato": "/x"}}, {}).data == {"tomato": "/x"}


@pytest.mark.parametrize(
    ("cli", "pyproject", "env", "message"),
    [
        ({"shard": "4/4"}, {}, {}, "--flow-shard: shard '4/4' is out of range"),
        ({}, {"dtype": "int8"}, {}, r"\[tool.flowcheck\] dtype: unknown dtype 'int8'"),
        ({}, {}, {"FLOWCHECK_MAX_SAMPLES": "0"}, "FLOWCHECK_MAX_SAMPLES: expected a positive integer"),
        ({}, {}, {"FLOWCHECK_TRUST_REMOTE_CODE": "maybe"}, "expected true or false"),
    ],
)
def test_bad_values_name_the_option_and_its_source(cli, pyproject, env, message):
    with pytest.raises(OptionError, match=message):
        resolve(cli, pyproject, env)


def test_pyproject_table_is_read_and_unknown_keys_are_refused(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.flowcheck]\nmax-samples = 4\nmodels = ["x"]\n')
    assert read_pyproject(tmp_path) == {"max-samples": 4, "models": ["x"]}
    (tmp_path / "pyproject.toml").write_text("[tool.flowcheck]\nmax_sample = 4\n")
    with pytest.raises(OptionError, match=r"unknown option.*max_sample"):
        read_pyproject(tmp_path)
    assert read_pyproject(tmp_path / "missing") == {}


def test_every_option_has_distinct_names():
    assert len({o.flag for o in OPTIONS}) == len({o.env for o in OPTIONS}) == len(OPTIONS)
