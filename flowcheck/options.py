"""flowcheck's run options from three sources: command line > ``[tool.flowcheck]`` in pyproject.toml > environment.

Every option is declared once in `OPTIONS` (its pytest flag, pyproject key, environment variable,
parser and default), so the three sources cannot drift apart.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class OptionError(ValueError):
    """An option value that cannot be used; the message names the option and its source."""


DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_MODELS = ("tiny-video-ft", "tiny-image")
DEFAULT_DATA = ("synthetic",)


def _list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            out.extend(_list(v))
        return out
    raise OptionError(f"expected a list or a comma-separated string, got {value!r}")


def _setting_value(text: str) -> Any:
    """A setting's value from text: JSON when it parses (numbers, true/false, lists, quoted strings), else the
    text itself (``mode=open_ended``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _settings(value: Any) -> dict[str, dict[str, Any]]:
    """``ANALYSIS.KEY=VALUE`` items -> {analysis: {key: value}}.

    The command line repeats the flag (one item each, commas allowed in values); the environment separates items
    with ``;``; pyproject.toml gives a table ``{"ANALYSIS.KEY" = value}`` or ``{ANALYSIS = {KEY = value}}``. Which
    analyses and keys exist is checked where the analyses are known (`flowcheck.analyses.base.check_settings`)."""
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, raw: Any) -> None:
        analysis, dot, key = str(name).strip().partition(".")
        if not dot or not analysis or not key:
            raise OptionError(
                f"a setting is written ANALYSIS.KEY=VALUE (e.g. answers_under_knockout.mode=open_ended), got {name!r}"
            )
        out.setdefault(analysis, {})[key.strip()] = raw

    if isinstance(value, Mapping):
        for name, raw in value.items():
            if isinstance(raw, Mapping) and "." not in str(name):
                for key, inner in raw.items():
                    add(f"{name}.{key}", inner)
            else:
                add(str(name), raw)
        return out
    items = value if isinstance(value, (list, tuple)) else str(value).split(";")
    for item in items:
        if isinstance(item, (list, tuple)):
            for name, raw in _settings(item).items():
                for key, inner in raw.items():
                    add(f"{name}.{key}", inner)
            continue
        text = str(item).strip()
        if not text:
            continue
        name, eq, raw = text.partition("=")
        if not eq:
            raise OptionError(f"a setting is written ANALYSIS.KEY=VALUE, got {text!r} (no '=')")
        add(name, _setting_value(raw.strip()))
    return out


def _data(value: Any) -> dict[str, str | None]:
    """``name`` or ``name=PATH`` items -> {name: path or None}."""
    if isinstance(value, Mapping):
        return {str(k): (None if v in (None, "") else str(v)) for k, v in value.items()}
    out: dict[str, str | None] = {}
    for item in _list(value):
        name, _, path = item.partition("=")
        out[name.strip()] = path.strip() or None
    return out


def _whole(value: Any, what: str) -> int:
    """An integer from an int or its decimal text; booleans and fractions are refused, never truncated."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise OptionError(f"expected {what}, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise OptionError(f"expected {what}, got {value!r}") from None


def _positive_int(value: Any) -> int:
    number = _whole(value, "a positive integer")
    if number < 1:
        raise OptionError(f"expected a positive integer, got {value!r}")
    return number


def _seed(value: Any) -> int:
    number = _whole(value, "a non-negative integer")
    if number < 0:
        raise OptionError(f"expected a non-negative integer (numpy seeds cannot be negative), got {value!r}")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise OptionError(f"expected true or false, got {value!r}")


def _dtype(value: Any) -> str:
    text = str(value).strip().lower().replace("torch.", "")
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    text = aliases.get(text, text)
    if text not in DTYPES:
        raise OptionError(f"unknown dtype {value!r}; choose one of {', '.join(DTYPES)}")
    return text


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise OptionError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def _shard(value: Any) -> tuple[int, int] | None:
    if value in (None, ""):
        return None
    text = str(value)
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise OptionError(f"a shard is written i/N (e.g. 0/4), got {value!r}") from None
    if total < 1 or not 0 <= index < total:
        raise OptionError(f"shard {value!r} is out of range: i must be in 0..N-1")
    return index, total


@dataclass(frozen=True)
class OptionSpec:
    """One option: its names in every source, how to parse it and its default."""

    name: str
    flag: str
    help: str
    parse: Callable[[Any], Any]
    default: Any
    repeatable: bool = False
    metavar: str | None = None
    switch: bool = False  # a flag without a value on the command line (store_true)

    @property
    def env(self) -> str:
        return "FLOWCHECK_" + self.name.upper()

    @property
    def key(self) -> str:
        return self.name.replace("_", "-")

    @property
    def argparse_help(self) -> str:
        """`help` for an argparse parser (pytest's included), which %-formats help strings: a literal % doubled."""
        return self.help.replace("%", "%%")


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "models",
        "--flow-model",
        "model: registry name, hub id or local path, optionally ALIAS=PATH to name it (repeatable)",
        _list,
        list(DEFAULT_MODELS),
        repeatable=True,
        metavar="[ALIAS=]MODEL",
    ),
    OptionSpec(
        "data",
        "--flow-data",
        "dataset, optionally with its root: synthetic, tvbench=PATH, tomato=PATH, folder=PATH (repeatable)",
        _data,
        {name: None for name in DEFAULT_DATA},
        repeatable=True,
        metavar="NAME[=PATH]",
    ),
    OptionSpec(
        "tasks",
        "--flow-tasks",
        "comma-separated task names (default: each dataset's analysed tasks)",
        _list,
        None,
        metavar="T1,T2",
    ),
    OptionSpec(
        "max_samples", "--flow-max-samples", "at most this many samples per task", _positive_int, None, metavar="N"
    ),
    OptionSpec("dtype", "--flow-dtype", f"model dtype: {', '.join(DTYPES)}", _dtype, "float32"),
    OptionSpec("device", "--flow-device", "torch device (cpu, cuda, cuda:1, ...)", str, "cpu"),
    OptionSpec(
        "batch_size",
        "--flow-batch-size",
        "knockouts per batched forward (default: from the memory budget)",
        _positive_int,
        None,
        metavar="B",
    ),
    OptionSpec(
        "memory_budget_mb",
        "--flow-memory-budget",
        "peak memory budget of a batched forward, in MB",
        _positive_int,
        None,
        metavar="MB",
    ),
    OptionSpec(
        "attention_backend",
        "--flow-attention",
        "attention of knocked-out forwards: sdpa (default) or flex (FlexAttention block masks)",
        _choice("sdpa", "flex"),
        "sdpa",
        metavar="BACKEND",
    ),
    OptionSpec(
        "window",
        "--flow-window",
        "knockout window width (default: 9 for >= 28 layers, scaled below)",
        _positive_int,
        None,
        metavar="K",
    ),
    OptionSpec(
        "cache_dir",
        "--flow-cache",
        "result cache directory (shareable between machines)",
        Path,
        Path(".flowcheck-cache"),
        metavar="DIR",
    ),
    OptionSpec(
        "data_dir",
        "--flow-data-dir",
        "where datasets fetched from the hub and the generated synthetic benchmark are stored",
        Path,
        Path.home() / ".cache" / "flowcheck" / "data",
        metavar="DIR",
    ),
    OptionSpec(
        "report_dir", "--flow-report-dir", "where reports/<run>/ are written", Path, Path("reports"), metavar="DIR"
    ),
    OptionSpec(
        "trust_remote_code",
        "--flow-trust-remote-code",
        "allow checkpoints' own model code to run",
        _bool,
        False,
        switch=True,
    ),
    OptionSpec(
        "shard", "--flow-shard", "compute only shard i of N of the (model, task) grid", _shard, None, metavar="i/N"
    ),
    OptionSpec("seed", "--flow-seed", "seed of every random choice (bootstrap, random pruning control)", _seed, 0),
    OptionSpec(
        "system_prompt",
        "--flow-system-prompt",
        "where chat-template models get the system prompt: auto (a system turn, folded into the user turn when "
        "the template refuses one), turn, fold or drop",
        _choice("auto", "turn", "fold", "drop"),
        "auto",
        metavar="MODE",
    ),
    OptionSpec(
        "claims",
        "--flow-claims",
        "extra claims registry file(s) (TOML): per-model thresholds and expected failures (repeatable)",
        _list,
        [],
        repeatable=True,
        metavar="FILE",
    ),
    OptionSpec(
        "baseline",
        "--flow-baseline",
        "gating: compare each model's numbers with the baseline recorded for this model name",
        str,
        None,
        metavar="MODEL",
    ),
    OptionSpec("no_report", "--flow-no-report", "do not write reports/<run>/", _bool, False, switch=True),
    # issue 19 (statistics): how bootstrap intervals resample; which metric knockout curves and gates show
    OptionSpec(
        "ci_resampling",
        "--flow-ci-resampling",
        "bootstrap intervals resample whole videos (video, default: TVBench and TOMATO ask several questions about "
        "one video) or every question on its own (sample, the paper's seaborn interval)",
        _choice("video", "sample"),
        "video",
        metavar="video|sample",
    ),
    OptionSpec(
        "curve_metric",
        "--flow-curve-metric",
        "what knockout curves, figures and gates show: relative_change (the paper's, in %) or margin (change of "
        "log p(true) - max log p(false), in nats); the claims always read relative change",
        _choice("relative_change", "margin"),
        "relative_change",
        metavar="METRIC",
    ),
    OptionSpec(
        "gate_allow",
        "--flow-gate-allow",
        "gating: provenance fields allowed to differ from the baseline's (dotted names the refusal lists, "
        "comma-separated, repeatable)",
        _list,
        [],
        repeatable=True,
        metavar="FIELD,...",
    ),
    # issue 17 (generation): opt-in analyses
    OptionSpec(
        "analyses",
        "--flow-analyses",
        "opt-in analyses to run besides the default ones, comma-separated (e.g. open_ended_flow)",
        _list,
        [],
        repeatable=True,
        metavar="NAMES",
    ),
    OptionSpec(
        "setting",
        "--flow-setting",
        "a setting of an analysis, ANALYSIS.KEY=VALUE (repeatable; VALUE as JSON or text), e.g. "
        "answers_under_knockout.mode=open_ended, answers_under_knockout.max_new_tokens=32, "
        "open_ended_flow.stop_strings='[\".\"]'; `flowcheck/specs/generation.json` lists each key and its default",
        _settings,
        {},
        repeatable=True,
        metavar="ANALYSIS.KEY=VALUE",
    ),
    OptionSpec(
        "pathway",
        "--flow-pathway",
        "effective pathways pruned to when the registry gives none: discovered (from the model's own knockout "
        "curves, on a seeded half of the samples; default), paper-scaled (the paper's LLaVA-NeXT-7B ranges scaled "
        "to the model's depth) or a keep-only route spec such as 'video->question@3-6, question->last@5-8' (layers "
        "from 1; it replaces the registry's)",
        str,
        "discovered",
        metavar="SPEC",
    ),
)

# Each option by name, for commands that accept some of the same options (e.g. `flowcheck verify`).
SPECS = {spec.name: spec for spec in OPTIONS}

# Environment variables flowcheck sets for itself (never read as user options).
INTERNAL_ENV = ("FLOWCHECK_PINNED",)


@dataclass(frozen=True)
class FlowOptions:
    """Resolved options, with the source each value came from."""

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def read_pyproject(rootdir: Path) -> dict[str, Any]:
    """The ``[tool.flowcheck]`` table of rootdir/pyproject.toml ({} when absent)."""
    path = rootdir / "pyproject.toml"
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        try:
            tool = tomllib.load(fh).get("tool", {})
        except tomllib.TOMLDecodeError as err:
            raise OptionError(f"{path} is not valid TOML: {err}") from None
    table = tool.get("flowcheck", {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise OptionError(f"[tool.flowcheck] of {path} must be a table of options, got {table!r}")
    both = sorted(spec.key for spec in OPTIONS if spec.key != spec.name and spec.key in table and spec.name in table)
    if both:
        raise OptionError(f"[tool.flowcheck] of {path} gives {', '.join(both)} twice (with - and with _): keep one")
    unknown = sorted(set(table) - {spec.key for spec in OPTIONS} - {spec.name for spec in OPTIONS})
    if unknown:
        raise OptionError(
            f"unknown option(s) {', '.join(unknown)} in [tool.flowcheck] of {path}; "
            f"known: {', '.join(spec.key for spec in OPTIONS)}"
        )
    return table


def resolve(cli: Mapping[str, Any], pyproject: Mapping[str, Any], env: Mapping[str, str]) -> FlowOptions:
    """Resolve every option; `cli` maps option names to values (None = not given)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in OPTIONS:
        candidates = (
            ("command line", cli.get(spec.name)),
            ("pyproject.toml", pyproject.get(spec.key, pyproject.get(spec.name))),
            ("environment", env.get(spec.env)),
        )
        for source, raw in candidates:
            if raw is None or (spec.repeatable and raw == []):
                continue
            try:
                values[spec.name] = spec.parse(raw)
            except OptionError as err:
                where = {
                    "command line": spec.flag,
                    "pyproject.toml": f"[tool.flowcheck] {spec.key}",
                    "environment": spec.env,
                }[source]
                raise OptionError(f"{where}: {err}") from None
            sources[spec.name] = source
            break
        else:
            values[spec.name] = spec.default
            sources[spec.name] = "default"
    return FlowOptions(values, sources)


def resolve_for(rootdir: Path, cli: Mapping[str, Any], env: Mapping[str, str] | None = None) -> FlowOptions:
    """`resolve` with the pyproject.toml of `rootdir` and the process environment."""
    return resolve(cli, read_pyproject(rootdir), os.environ if env is None else env)
