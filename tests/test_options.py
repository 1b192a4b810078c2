"""Run options: command line > [tool.flowcheck] > environment > default, with clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import flowcheck
from flowcheck.options import INTERNAL_ENV, OPTIONS, OptionError, read_pyproject, resolve


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
    assert len({o.key for o in OPTIONS}) == len({o.name for o in OPTIONS}) == len(OPTIONS)


def test_each_environment_variable_and_ini_key_means_one_thing():
    """FLOWCHECK_DATA was both the dataset list and the data cache folder (FLOWCHECK_DATA=synthetic generated the
    benchmark into ./synthetic/). Every FLOWCHECK_* name the package reads must be one option's, or internal."""
    package = Path(flowcheck.__file__).parent
    declared = {o.env for o in OPTIONS}
    used: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        for name in re.findall(r"FLOWCHECK_[A-Z_]+", path.read_text()):
            used.setdefault(name, set()).add(str(path.relative_to(package)))
    undeclared = {n: files for n, files in used.items() if n not in declared and n not in INTERNAL_ENV}
    assert not undeclared, f"environment variables read outside the OPTIONS table: {undeclared}"
    # the data-cache folder is its own option, and the dataset list does not touch it
    opts = resolve({}, {}, {"FLOWCHECK_DATA": "synthetic", "FLOWCHECK_DATA_DIR": "/d/cache"})
    assert opts.data == {"synthetic": None} and opts.data_dir == Path("/d/cache")
    assert resolve({}, {}, {}).data_dir == Path.home() / ".cache" / "flowcheck" / "data"


def test_the_data_dir_option_is_where_the_synthetic_benchmark_is_generated(tmp_path: Path):
    from flowcheck.data.hub import cache_root, default_cache

    with cache_root(tmp_path / "cache"):
        assert default_cache() == tmp_path / "cache"
    assert default_cache() != tmp_path / "cache"


def test_model_aliases_parse_from_every_source():
    opts = resolve({"models": ["base=/ckpt/a", "new=/ckpt/b"]}, {}, {})
    assert opts.models == ["base=/ckpt/a", "new=/ckpt/b"]
    assert resolve({}, {}, {"FLOWCHECK_MODELS": "x=/a,y=/b"}).models == ["x=/a", "y=/b"]


@pytest.mark.parametrize(
    ("pyproject", "message"),
    [
        ({"max-samples": True}, "positive integer"),
        ({"max-samples": 2.9}, "positive integer"),
        ({"seed": 3.7}, "non-negative integer"),
        ({"seed": -1}, "non-negative"),
        ({"window": True}, "positive integer"),
        ({"attention-backend": "fast"}, "sdpa, flex"),
    ],
)
def test_pyproject_numbers_are_never_truncated_or_coerced(pyproject, message):
    with pytest.raises(OptionError, match=message):
        resolve({}, pyproject, {})


def test_a_tool_flowcheck_that_is_not_a_table_or_names_an_option_twice_is_refused(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text("[tool]\nflowcheck = 3\n")
    with pytest.raises(OptionError, match="must be a table"):
        read_pyproject(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.flowcheck]\nmax-samples = 2\nmax_samples = 3\n")
    with pytest.raises(OptionError, match="twice"):
        read_pyproject(tmp_path)


def test_analysis_settings_parse_from_every_source():
    cli = resolve(
        {
            "setting": [
                "answers_under_knockout.mode=open_ended",
                "answers_under_knockout.max_new_tokens=32",
                'open_ended_flow.stop_strings=[".", "\\n"]',
            ]
        },
        {},
        {},
    )
    assert cli.setting == {
        "answers_under_knockout": {"mode": "open_ended", "max_new_tokens": 32},
        "open_ended_flow": {"stop_strings": [".", "\n"]},
    }
    env = resolve({}, {}, {"FLOWCHECK_SETTING": "answers_under_knockout.mode=open_ended;open_ended_flow.prompt=mc"})
    assert env.setting == {"answers_under_knockout": {"mode": "open_ended"}, "open_ended_flow": {"prompt": "mc"}}
    table = {"answers_under_knockout.examples": 2, "open_ended_flow": {"anchor_orders": [1]}}
    assert resolve({}, {"setting": table}, {}).setting == {
        "answers_under_knockout": {"examples": 2},
        "open_ended_flow": {"anchor_orders": [1]},
    }
    assert resolve({}, {}, {}).setting == {}
    with pytest.raises(OptionError, match=r"--flow-setting: a setting is written ANALYSIS\.KEY=VALUE"):
        resolve({"setting": ["mode=open_ended"]}, {}, {})
    with pytest.raises(OptionError, match="no '='"):
        resolve({"setting": ["answers_under_knockout.mode"]}, {}, {})
