"""The claims: definitions (data in specs/claims.toml), per-model overrides, and their evaluation.

A claim is evaluated on a `TaskSummary` (the aggregated analyses of one model on one task, or on
a whole dataset) and gives a `ClaimResult` whose message states the measured values next to the
thresholds.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from flowcheck.analyses.summary import TaskSummary

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class RegistryError(ValueError):
    """A claims registry file that cannot be used."""


@dataclass(frozen=True)
class ClaimSpec:
    name: str
    claim: str
    suite: str
    scope: str
    tasks: str
    title: str
    thresholds: dict[str, float]


@dataclass
class Registry:
    """Claim definitions, per-model settings (thresholds, strict xfails, paired image model) and gating tolerances.

    `findings` maps each of the paper's findings (``"C1"`` .. ``"C5"``, the `claim` field of a ClaimSpec) to its
    one-line statement."""

    claims: dict[str, ClaimSpec]
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    tolerances: dict[str, dict[str, float]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    evidence: dict[str, float] = field(default_factory=lambda: {"min_samples": 10})
    findings: dict[str, str] = field(default_factory=dict)

    def thresholds(self, claim: str, model: str) -> dict[str, float]:
        """The claim's thresholds for `model`, with the evidence minimum (``min_samples``) of the registry."""
        base = {**self.claims[claim].thresholds, **self.evidence}
        base.update(self.models.get(model, {}).get("thresholds", {}).get(claim, {}))
        return base

    def xfail_reason(self, claim: str, model: str, task: str) -> str | None:
        """The registered reason why `model` does not show `claim` (on `task`, or on every task)."""
        xfails = self.models.get(model, {}).get("xfail", {})
        return xfails.get(f"{claim}[{task}]") or xfails.get(claim)

    def model_setting(self, model: str, key: str, default: Any = None) -> Any:
        return self.models.get(model, {}).get(key, default)

    def alias(self, name: str, source: str) -> None:
        """Let entries written for a model's source (its path or hub id) apply to its run name too."""
        if name != source and name not in self.models and source in self.models:
            self.models[name] = self.models[source]


def _read_toml(path: Path | str, text: str | None = None) -> dict:
    try:
        return tomllib.loads(text if text is not None else Path(path).read_text())
    except tomllib.TOMLDecodeError as err:
        raise RegistryError(f"{path} is not valid TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RegistryError(f"cannot read the claims registry file {path}: {err}") from None


# What a [models."<name>"] entry may set, with a check of each value (the registry is data users write by hand).
MODEL_KEYS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "image_model": ("a model name (string)", lambda v: isinstance(v, str) and bool(v.strip())),
    "paper_model": ("one of the paper's model names (string)", lambda v: isinstance(v, str) and bool(v.strip())),
    "keywords": ("a keyword file name or path (string)", lambda v: isinstance(v, str) and bool(v.strip())),
    "answer_final_norm": ("true or false", lambda v: isinstance(v, bool)),
    "pathway_layers": (
        "a table of cross_frame, video_to_question, question_to_last = [first, last] (layers from 1)",
        lambda v: (
            isinstance(v, dict)
            and all(
                isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                for r in v.values()
            )
        ),
    ),
}


# Threshold pairs that bound one range (lower, upper): a registry that reverses them makes a claim impossible.
ORDERED_THRESHOLDS = (("from_fraction", "before_fraction"),)


def _number(value: Any) -> bool:
    """A finite int or float (a NaN threshold would make every comparison fail, an infinite one every pass)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_registry(extra: list[Path] | None = None) -> Registry:
    """The bundled registry, updated by each extra file in order (later files win)."""
    default_text = resources.files("flowcheck.specs").joinpath("claims.toml").read_text()
    data = _read_toml("flowcheck/specs/claims.toml", default_text)
    claims = {}
    for name, entry in data.get("claims", {}).items():
        claims[name] = ClaimSpec(
            name,
            entry["claim"],
            entry["suite"],
            entry["scope"],
            entry["tasks"],
            entry["title"],
            dict(entry.get("thresholds", {})),
        )
    registry = Registry(
        claims,
        {},
        dict(data.get("gating", {}).get("tolerances", {})),
        ["flowcheck/specs/claims.toml"],
        dict(data.get("evidence", {"min_samples": 10})),
        _findings(data.get("findings", {}), claims, "flowcheck/specs/claims.toml"),
    )
    _merge_models(registry, data.get("models", {}), "flowcheck/specs/claims.toml")
    for path in extra or []:
        path = Path(path)
        if not path.exists():
            raise RegistryError(f"claims registry file {path} does not exist")
        more = _read_toml(path)
        unknown = set(more) - {"models", "gating", "evidence"}
        if unknown:
            raise RegistryError(
                f"{path}: unknown table(s) {sorted(unknown)}; a registry file has [models.*], [gating] and [evidence]"
            )
        registry.evidence.update(_evidence(more.get("evidence", {}), registry.evidence, path))
        _merge_models(registry, more.get("models", {}), str(path))
        registry.tolerances.update(more.get("gating", {}).get("tolerances", {}))
        registry.sources.append(str(path))
    return registry


def _findings(table: Any, claims: Mapping[str, ClaimSpec], source: str) -> dict[str, str]:
    """The [findings] table (finding id -> one-line statement); every claim must name one of them."""
    if not isinstance(table, dict) or not all(isinstance(v, str) and v.strip() for v in table.values()):
        raise RegistryError(f"{source}: [findings] must map finding ids (C1, ...) to one-line statements")
    unknown = sorted({c.claim for c in claims.values()} - set(table))
    if unknown:
        raise RegistryError(f"{source}: claims name finding(s) {unknown} that [findings] does not state")
    return dict(table)


def _evidence(table: Any, known: Mapping[str, Any], source: Path | str) -> dict[str, int]:
    """An [evidence] table: ``min_samples``, a positive integer."""
    if not isinstance(table, dict):
        raise RegistryError(f"{source}: [evidence] must be a table, got {table!r}")
    bad = set(table) - set(known)
    if bad:
        raise RegistryError(f"{source}: unknown [evidence] key(s) {sorted(bad)}; known: {sorted(known)}")
    for key, value in table.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RegistryError(f"{source}: [evidence] {key} must be a positive integer, got {value!r}")
    return dict(table)


def _merge_models(registry: Registry, models: Mapping[str, Any], source: str) -> None:
    for model, entry in models.items():
        if not isinstance(entry, dict):
            raise RegistryError(f'{source}: [models."{model}"] must be a table of settings, got {entry!r}')
        target = registry.models.setdefault(model, {})
        if "pathway" in entry:
            raise RegistryError(
                f"{source}: [models.{model!r}] pathway (0-based layers) is now pathway_layers, with layers counted "
                "from 1 as in the paper's Table 3: add 1 to each bound"
            )
        for key, value in entry.items():
            if key in ("thresholds", "xfail"):
                if not isinstance(value, dict):
                    raise RegistryError(f'{source}: [models."{model}".{key}] must be a table, got {value!r}')
                for claim in value:
                    base = claim.split("[", 1)[0]
                    if base not in registry.claims:
                        raise RegistryError(f"{source}: [models.{model!r}.{key}] names unknown claim {claim!r}")
                if key == "thresholds":
                    for claim, overrides in value.items():
                        if claim not in registry.claims:
                            raise RegistryError(
                                f"{source}: thresholds are set per claim, not per task: {claim!r} under "
                                f'[models."{model}".thresholds]'
                            )
                        if not isinstance(overrides, dict) or not all(_number(v) for v in overrides.values()):
                            raise RegistryError(
                                f'{source}: [models."{model}".thresholds.{claim}] must map threshold names to numbers, '
                                f"got {overrides!r}"
                            )
                        known = {**registry.claims[claim].thresholds, **registry.evidence}
                        bad = set(overrides) - set(known)
                        if bad:
                            raise RegistryError(
                                f"{source}: unknown threshold(s) {sorted(bad)} for {claim}; known: {sorted(known)}"
                            )
                        fractions = {k: v for k, v in overrides.items() if k.endswith("_fraction") and not 0 <= v <= 1}
                        if fractions:
                            raise RegistryError(
                                f'{source}: [models."{model}".thresholds.{claim}] {fractions}: a fraction of the '
                                "depth lies between 0 and 1"
                            )
                        for key in set(overrides) & set(registry.evidence):
                            _evidence({key: overrides[key]}, registry.evidence, f'{source}: [models."{model}"]')
                        target.setdefault("thresholds", {}).setdefault(claim, {}).update(overrides)
                        merged = {**registry.claims[claim].thresholds, **target["thresholds"][claim]}
                        for low, high in ORDERED_THRESHOLDS:
                            if low in merged and high in merged and not merged[low] < merged[high]:
                                raise RegistryError(
                                    f'{source}: [models."{model}".thresholds.{claim}] {low} = {merged[low]} must be '
                                    f"below {high} = {merged[high]}: no value could satisfy the claim"
                                )
                else:
                    empty = [c for c, reason in value.items() if not isinstance(reason, str) or not reason.strip()]
                    if empty:
                        raise RegistryError(
                            f'{source}: [models."{model}".xfail] {empty}: an expected failure needs its measured '
                            "reason as a non-empty string"
                        )
                    target.setdefault("xfail", {}).update(value)
            elif key in MODEL_KEYS:
                what, valid = MODEL_KEYS[key]
                if not valid(value):
                    raise RegistryError(f'{source}: [models."{model}"] {key} must be {what}, got {value!r}')
                if key == "image_model" and value == model:
                    raise RegistryError(
                        f'{source}: [models."{model}"] image_model is the model itself; name its paired image model'
                    )
                target[key] = value
            else:
                raise RegistryError(
                    f'{source}: [models."{model}"] has unknown setting {key!r}; known: '
                    f"{', '.join(sorted([*MODEL_KEYS, 'thresholds', 'xfail']))}"
                )


# ----------------------------------------------------------------------------------------------
# What a claim sees


@dataclass
class ClaimResult:
    """The verdict of one claim on one case: `passed` (a bool), the measured values and the thresholds (JSON types)."""

    claim: str
    model: str
    task: str
    passed: bool
    measured: dict[str, Any]
    thresholds: dict[str, Any]
    message: str

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class NotEvaluable(Exception):
    """A claim that cannot be evaluated on a case (no analysis result, too few samples, no keyword in the
    vocabulary): reported as "not evaluable" with this reason, never as a pass or a failure."""


def builtin(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into Python bool / int / float / list (for JSON)."""
    if isinstance(value, Mapping):
        return {str(k): builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [builtin(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return builtin(value.tolist())
    return value


def _fmt(value: Any) -> Any:
    value = builtin(value)
    if isinstance(value, float) and math.isfinite(value):
        # 3 decimals, but never round a small value (a p-value of 2e-4) to 0: keep 3 significant digits
        return round(value, 3) if abs(value) >= 0.01 or value == 0 else float(f"{value:.3g}")
    return value


def user_layer(index: int | float) -> int | float:
    """A 0-based layer index as users read it: layers are numbered from 1, as in the paper's figures and Table 3."""
    return index + 1


def claim_result(
    spec: ClaimSpec, summary: TaskSummary, passed: bool, measured: dict, thresholds: dict, why: str
) -> ClaimResult:
    measured = {k: _fmt(v) for k, v in measured.items()}
    thresholds = {k: _fmt(v) for k, v in thresholds.items()}
    passed = bool(passed)
    shown = ", ".join(f"{k}={v}" for k, v in measured.items())
    limits = ", ".join(f"{k}={v}" for k, v in thresholds.items())
    verdict = "holds" if passed else "does not hold"
    message = (
        f"{spec.name} {verdict} for {summary.model} on {summary.task}: {why}. Measured {shown}; thresholds {limits}."
    )
    return ClaimResult(spec.name, summary.model, summary.task, passed, measured, thresholds, message)


def require_samples(summary: TaskSummary, n: int, t: Mapping[str, float], what: str) -> None:
    """Raise NotEvaluable when fewer than ``t["min_samples"]`` samples (at least 1) enter the claim's statistic."""
    minimum = max(1, int(t.get("min_samples", 1)))
    if n < minimum:
        raise NotEvaluable(
            f"{n} {what} for {summary.model} on {summary.task} ({summary.n_correct} of {summary.n} samples answered "
            f"correctly); at least {minimum} are needed (min_samples)"
        )


@dataclass
class Evidence:
    """What a claim is evaluated on: the case's summary, the claim's thresholds for the model, the model's registry
    settings (`setting(key)`) and the summary of another model on the same dataset and task (`summary_of(name)`,
    e.g. a paired image model)."""

    summary: TaskSummary
    thresholds: dict[str, float]
    setting: Callable[[str], Any] = lambda key: None
    summary_of: Callable[[str], TaskSummary] | None = None


Evaluator = Callable[[ClaimSpec, Evidence], ClaimResult]
_EVALUATORS: dict[str, Evaluator] = {}
BUILTIN_EVALUATORS = "flowcheck.evaluators"


def evaluator(name: str, *, default: bool = False) -> Callable[[Evaluator], Evaluator]:
    """Decorator: register the evaluator of claim `name` (a ``[claims.<name>]`` of the registry). A `default`
    evaluator (flowcheck's own) never replaces one registered before it, e.g. by a conftest or plugin."""

    def add(function: Evaluator) -> Evaluator:
        if not (default and name in _EVALUATORS):
            _EVALUATORS[name] = function
        return function

    return add


def evaluators() -> dict[str, Evaluator]:
    """Every registered claim evaluator by claim name (the paper's, from `flowcheck.evaluators`, and any other)."""
    importlib.import_module(BUILTIN_EVALUATORS)
    return dict(_EVALUATORS)


def evaluate(registry: Registry, claim: str, evidence: Evidence) -> ClaimResult:
    """Evaluate `claim` on `evidence`. Raises NotEvaluable when the evidence does not allow a verdict (saying so
    when the task has only open-ended questions, which the paper's claims do not read) and KeyError when no
    evaluator is registered for the claim."""
    known = evaluators()
    if claim not in known:
        raise KeyError(f"no evaluator is registered for claim {claim!r}; registered: {', '.join(sorted(known))}")
    try:
        return known[claim](registry.claims[claim], evidence)
    except NotEvaluable as err:
        s = evidence.summary
        if s.n == 0 and s.n_open_ended:
            raise NotEvaluable(
                f"{s.model} on {s.task}: the task's {s.n_open_ended} questions are open-ended (no candidates), and "
                f"this claim reads multiple-choice samples ({err})"
            ) from None
        raise
