"""The claims: definitions (data in specs/claims.toml), per-model overrides, and their evaluation.

A claim is evaluated on a `TaskSummary` (the aggregated analyses of one model on one task, or on
a whole dataset) and gives a `ClaimResult` whose message states the measured values next to the
thresholds.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from flowcheck.analyses.accuracy import AccuracyUnderKnockout
from flowcheck.analyses.answer_probability import ProbabilityCurves
from flowcheck.analyses.curves import Curve
from flowcheck.analyses.logit_lens import LensSummary
from flowcheck.analyses.pruning import PruningSummary

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


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
                        target.setdefault("thresholds", {}).setdefault(claim, {}).update(overrides)
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
                target[key] = value
            else:
                raise RegistryError(
                    f'{source}: [models."{model}"] has unknown setting {key!r}; known: '
                    f"{', '.join(sorted([*MODEL_KEYS, 'thresholds', 'xfail']))}"
                )


# ----------------------------------------------------------------------------------------------
# What a claim sees


@dataclass
class TaskSummary:
    """Aggregated analyses of one model on one task (or a whole dataset for dataset-scope claims)."""

    model: str
    dataset: str
    task: str
    num_layers: int
    n: int
    n_correct: int
    curves: dict[str, Curve] = field(default_factory=dict)
    accuracy: AccuracyUnderKnockout | None = None
    answer: ProbabilityCurves | None = None
    lens: LensSummary | None = None
    lens_problem: str = ""  # why the logit lens could not run (e.g. no keyword of a list is a token of the model)
    pruning: PruningSummary | None = None
    correctness_change: dict[str, int] = field(default_factory=dict)  # sample id -> knocked - base (first half)


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


def _result(
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


def _curve(summary: TaskSummary, condition: str, t: Mapping[str, float]) -> Curve:
    curve = summary.curves.get(condition)
    n = 0 if curve is None else curve.n
    require_samples(summary, n, t, f"correctly answered samples in the {condition} curve")
    return curve


def _cross_frame_early(spec, s: TaskSummary, t) -> ClaimResult:
    c = _curve(s, "cross_frame", t)
    last = math.ceil(t["within_fraction"] * s.num_layers)  # the last window centre (1-based) that counts as early
    passed = c.minimum <= t["min_change_pct"] and user_layer(c.argmin) <= last
    return _result(
        spec,
        s,
        passed,
        {"minimum_pct": c.minimum, "at_layer": user_layer(c.argmin), "latest_early_layer": last, "n": c.n},
        t,
        "the cross-frame curve's minimum and where it falls",
    )


def _late_flat(spec, s: TaskSummary, t) -> ClaimResult:
    c = _curve(s, "cross_frame", t)
    start = math.ceil(t["from_fraction"] * s.num_layers)  # first late window centre, 0-based
    late = [abs(m) for x, m in zip(c.centers, c.mean, strict=True) if x >= start]
    if not late:
        raise NotEvaluable(f"no window centre at or after layer {user_layer(start)} of {s.num_layers} for {s.model}")
    worst = max(late)
    return _result(
        spec,
        s,
        worst <= t["max_abs_change_pct"],
        {"max_abs_late_pct": worst, "from_layer": user_layer(start), "n": c.n},
        t,
        "the cross-frame curve in the last quarter",
    )


def _accuracy_drop(spec, s: TaskSummary, t) -> ClaimResult:
    if s.accuracy is None:
        raise NotEvaluable(f"no first-half cross-frame accuracy for {s.model} on {s.task}")
    a = s.accuracy
    require_samples(s, a.n, t, "samples")
    if s.n_correct == 0:
        raise NotEvaluable(f"{s.model} answers none of the {s.n} samples of {s.task} correctly: no accuracy to drop")
    return _result(
        spec,
        s,
        a.drop_points <= t["max_drop_points"],
        {
            "base_acc": a.base,
            "knocked_acc": a.knocked,
            "drop_points": a.drop_points,
            "drop_relative_pct": a.drop_relative,
            "n": a.n,
        },
        t,
        "accuracy with cross-frame attention blocked in layers [0, L/2) (absolute points)",
    )


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(X >= wins) for X ~ Binomial(wins + losses, 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


def paired_drop_test(video: Mapping[str, int], image: Mapping[str, int]) -> tuple[int, int, float]:
    """Per shared sample, did the video model lose more than the image model? (wins, losses, one-sided p)."""
    shared = sorted(set(video) & set(image))
    wins = sum(video[k] < image[k] for k in shared)
    losses = sum(video[k] > image[k] for k in shared)
    return wins, losses, sign_test_p(wins, losses)


def evaluate_video_vs_image(spec: ClaimSpec, video: TaskSummary, image: TaskSummary, t) -> ClaimResult:
    if not video.correctness_change or not image.correctness_change:
        raise NotEvaluable(f"no first-half cross-frame records for {video.model} and its image model on {video.task}")
    paired = len(set(video.correctness_change) & set(image.correctness_change))
    require_samples(video, paired, t, f"samples answered by both {video.model} and {image.model}")
    if video.n_correct == 0:
        raise NotEvaluable(f"{video.model} answers none of the {video.n} samples of {video.task} correctly")
    wins, losses, p = paired_drop_test(video.correctness_change, image.correctness_change)
    measured = {
        "video_drop_points": video.accuracy.drop_points if video.accuracy else float("nan"),
        "image_drop_points": image.accuracy.drop_points if image.accuracy else float("nan"),
        "video_worse_pairs": wins,
        "image_worse_pairs": losses,
        "p_value": p,
        "image_model": image.model,
        "n": paired,
    }
    return _result(
        spec,
        video,
        p <= t["alpha"],
        measured,
        t,
        "paired over samples: does first-half cross-frame blocking hurt the video model more",
    )


def _route_vq(spec, s: TaskSummary, t) -> ClaimResult:
    c = _curve(s, "video->question", t)
    last = math.ceil(t["within_fraction"] * s.num_layers)
    return _result(
        spec,
        s,
        c.minimum <= t["min_change_pct"] and user_layer(c.argmin) <= last,
        {"minimum_pct": c.minimum, "at_layer": user_layer(c.argmin), "latest_layer": last, "n": c.n},
        t,
        "the Video -/-> Question curve's minimum and where it falls",
    )


def _route_ql(spec, s: TaskSummary, t) -> ClaimResult:
    c, vq = _curve(s, "question->last", t), _curve(s, "video->question", t)
    passed = c.minimum <= t["min_change_pct"] and c.argmin > vq.argmin
    return _result(
        spec,
        s,
        passed,
        {
            "minimum_pct": c.minimum,
            "at_layer": user_layer(c.argmin),
            "video_to_question_at": user_layer(vq.argmin),
            "n": c.n,
        },
        t,
        "the Question -/-> Last minimum and whether it comes after the Video -/-> Question one",
    )


def _flat(condition: str) -> Callable:
    def evaluate(spec, s: TaskSummary, t) -> ClaimResult:
        c = _curve(s, condition, t)
        worst = max(abs(m) for m in c.mean)
        return _result(
            spec,
            s,
            worst <= t["max_abs_change_pct"],
            {"max_abs_pct": worst, "n": c.n},
            t,
            f"the {condition} curve at every window",
        )

    return evaluate


def _lens(spec, s: TaskSummary, t) -> ClaimResult:
    if s.lens_problem:
        raise NotEvaluable(f"the logit lens cannot run for {s.model} on {s.dataset}: {s.lens_problem}")
    if s.lens is None:
        raise NotEvaluable(f"no logit-lens results for {s.model} on {s.task}")
    require_samples(s, s.lens.samples, t, "correctly answered samples with logit-lens results")
    spatial, temporal = s.lens.mean_layer.get("spatial", math.nan), s.lens.mean_layer.get("temporal", math.nan)
    if math.isnan(spatial) or math.isnan(temporal):
        raise NotEvaluable(
            f"no keyword hits in the video tokens of {s.model} on {s.task} (hits: {s.lens.hits}): no video position "
            "reads as a keyword of both lists at any layer"
        )
    return _result(
        spec,
        s,
        temporal - spatial >= t["min_layer_gap"],
        {
            "temporal_mean_layer": user_layer(temporal),
            "spatial_mean_layer": user_layer(spatial),
            "hits": s.lens.hits,
            "n": s.lens.samples,
        },
        t,
        "hit-weighted mean layer of temporal vs spatial keywords",
    )


def _ready(spec, s: TaskSummary, t) -> ClaimResult:
    if s.answer is None:
        raise NotEvaluable(f"no answer-probability results for {s.model} on {s.task}")
    require_samples(s, s.answer.n, t, "correctly answered samples with answer probabilities")
    vq = _curve(s, "video->question", t).argmin
    before = s.answer.true_mean[:vq] or [s.answer.true_mean[0]]
    after = s.answer.true_mean[vq:]
    low, peak = max(before), max(after)
    passed = low <= t["low_max_pct"] and peak - low >= t["min_rise_pct"]
    return _result(
        spec,
        s,
        passed,
        {"max_before_pct": low, "peak_after_pct": peak, "video_to_question_at": user_layer(vq), "n": s.answer.n},
        t,
        "true-option probability by layer around the Video -/-> Question minimum",
    )


def _beats(spec, s: TaskSummary, t) -> ClaimResult:
    if s.answer is None:
        raise NotEvaluable(f"no answer-probability results for {s.model} on {s.task}")
    require_samples(s, s.answer.n, t, "correctly answered samples with answer probabilities")
    start = math.ceil(t["from_fraction"] * s.num_layers)
    margins = [tr - fa for tr, fa in zip(s.answer.true_mean[start:], s.answer.false_max_mean[start:], strict=True)]
    if not margins:
        raise NotEvaluable(f"no layer at or after layer {user_layer(start)} of {s.num_layers}")
    worst = min(margins)
    return _result(
        spec,
        s,
        worst > 0,
        {"from_layer": user_layer(start), "min_margin_pct": worst, "n": s.answer.n},
        t,
        "mean true-option minus best false-option probability from the middle layers on",
    )


def _pruning_summary(s: TaskSummary, t: Mapping[str, float], accuracy: bool = True) -> PruningSummary:
    if s.pruning is None:
        raise NotEvaluable(f"no pruning results for {s.model} on {s.task}")
    require_samples(s, s.pruning.n, t, "samples with pruning results")
    if accuracy and s.pruning.full_accuracy <= 0:
        raise NotEvaluable(
            f"{s.model} answers none of the {s.pruning.n} samples correctly with full attention: "
            "accuracy under pruning cannot be compared"
        )
    return s.pruning


def _edges(spec, s: TaskSummary, t) -> ClaimResult:
    p = _pruning_summary(s, t, accuracy=False)
    return _result(
        spec,
        s,
        p.kept_fraction <= t["max_kept_fraction"],
        {"kept_fraction": p.kept_fraction, "n": p.n},
        t,
        "share of attention edges the effective pathways keep",
    )


def _parity(spec, s: TaskSummary, t) -> ClaimResult:
    p = _pruning_summary(s, t)
    loss = p.full_accuracy - p.effective_accuracy
    return _result(
        spec,
        s,
        loss <= t["max_loss_points"],
        {"full_acc": p.full_accuracy, "effective_acc": p.effective_accuracy, "loss_points": loss, "n": p.n},
        t,
        "accuracy with only the effective pathways vs full attention",
    )


def _random(spec, s: TaskSummary, t) -> ClaimResult:
    p = _pruning_summary(s, t)
    loss = p.full_accuracy - p.random_accuracy
    return _result(
        spec,
        s,
        loss >= t["min_loss_points"],
        {"full_acc": p.full_accuracy, "random_acc": p.random_accuracy, "loss_points": loss, "n": p.n},
        t,
        "accuracy with as many edges blocked at random",
    )


EVALUATORS: dict[str, Callable[[ClaimSpec, TaskSummary, dict], ClaimResult]] = {
    "cross_frame_early": _cross_frame_early,
    "cross_frame_late_flat": _late_flat,
    "cross_frame_accuracy_drop": _accuracy_drop,
    "route_video_to_question": _route_vq,
    "route_question_to_last": _route_ql,
    "route_no_direct_video_to_last": _flat("video->last"),
    "route_last_to_last_flat": _flat("last->last"),
    "temporal_concepts_late": _lens,
    "answer_ready_after_integration": _ready,
    "true_option_beats_false": _beats,
    "pruning_edges_kept": _edges,
    "pruning_parity": _parity,
    "random_pruning_hurts": _random,
}


def evaluate(registry: Registry, claim: str, summary: TaskSummary) -> ClaimResult:
    """Evaluate one claim (not the paired image comparison, see `evaluate_video_vs_image`)."""
    spec = registry.claims[claim]
    return EVALUATORS[claim](spec, summary, registry.thresholds(claim, summary.model))
