"""The gate's settings, read from the claims registry's ``[gating]`` table (thresholds are data, not code).

``[gating]`` holds the significance level, the bootstrap, the per-sample storage of a baseline, the provenance
fields that change numbers, and ``[gating.profile]`` (curve-profile tolerances, with per-condition overrides in
``[gating.profile.conditions."<condition>"]``). ``[gating.tolerances]`` (per metric kind) is the registry's own.
Later registry files (``--flow-claims``) override earlier ones key by key.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUNDLED = "flowcheck/specs/claims.toml"
RESAMPLING = ("video", "sample")
CORRECTIONS = ("bonferroni", "none")


class GateConfigError(ValueError):
    """A ``[gating]`` value that cannot be used; the message names the key and its file."""


@dataclass(frozen=True)
class ProfileTolerance:
    """Curve-profile tolerances of one condition: Spearman rank correlation of the new curve with the baseline's
    at least `min_spearman`; the argmin window within `argmin_layers` layers; of the `top_windows` most harmful
    windows (lowest mean relative change) at least `min_top_overlap` in common. Curves whose range (max - min of
    the mean, in % relative change) is below `min_range_pct` in both runs are flat: their ranks are noise and no
    profile check applies."""

    min_spearman: float = 0.8
    argmin_layers: int = 2
    top_windows: int = 3
    min_top_overlap: int = 1
    min_range_pct: float = 5.0


@dataclass(frozen=True)
class GateConfig:
    """Everything the gate decides with. `alpha`: significance level of the paired tests; `confidence`: level of
    the intervals shown; `n_boot`: bootstrap resamples; `resampling`: "video" (whole videos, default) or "sample";
    `curve_correction`: "bonferroni" tests each window of a curve at alpha / windows, "none" at alpha;
    `curve_decimals`: per-sample relative changes (%) kept in a baseline; `min_curve_pairs`: a curve window compared
    on fewer pairs is never called significant (a percentile bootstrap of a handful of values is too narrow);
    `number_changing`: provenance fields
    (dotted, ``*`` wildcards) whose difference changes numbers; `tolerances`: per metric kind ``{abs, rel}``."""

    alpha: float = 0.05
    confidence: float = 0.95
    n_boot: int = 1000
    resampling: str = "video"
    curve_correction: str = "bonferroni"
    curve_decimals: int = 3
    min_curve_pairs: int = 10
    number_changing: tuple[str, ...] = ()
    tolerances: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    profile: ProfileTolerance = ProfileTolerance()
    profile_conditions: Mapping[str, ProfileTolerance] = field(default_factory=dict)

    def tolerance(self, kind: str, baseline: float = 0.0) -> float:
        """The allowed absolute difference of a metric of `kind` (``max(abs, rel * |baseline|)``; 0 when unset)."""
        tol = self.tolerances.get(kind, {})
        return max(float(tol.get("abs", 0.0)), float(tol.get("rel", 0.0)) * abs(baseline))

    def profile_for(self, condition: str) -> ProfileTolerance:
        """The profile tolerances of `condition` (its override, else the defaults)."""
        return self.profile_conditions.get(condition, self.profile)


def _read(path: str) -> dict[str, Any]:
    text = resources.files("flowcheck.specs").joinpath("claims.toml").read_text() if path == BUNDLED else None
    try:
        return tomllib.loads(text if text is not None else Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise GateConfigError(f"cannot read [gating] from {path}: {err}") from None


def _profile(table: Mapping[str, Any], base: ProfileTolerance, where: str) -> ProfileTolerance:
    known = ProfileTolerance.__dataclass_fields__
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise GateConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    out = replace(base, **{k: v for k, v in table.items()})
    for name in known:
        value = getattr(out, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise GateConfigError(f"{where}.{name} must be a finite number, got {value!r}")
    if out.top_windows < 1 or not 0 <= out.min_top_overlap <= out.top_windows or out.argmin_layers < 0:
        raise GateConfigError(
            f"{where}: need top_windows >= 1, 0 <= min_top_overlap <= top_windows, argmin_layers >= 0"
        )
    return out


def gate_config(sources: Iterable[str], tolerances: Mapping[str, Mapping[str, float]]) -> GateConfig:
    """The `GateConfig` of the registry files `sources` (the registry's `sources`: the bundled file's label first,
    then the ``--flow-claims`` files in order) and the registry's merged `tolerances`.

    Raises GateConfigError for an unknown key, a value of the wrong type or out of range."""
    config = GateConfig(tolerances={k: dict(v) for k, v in tolerances.items()})
    scalar_keys = {
        "alpha",
        "confidence",
        "n_boot",
        "resampling",
        "curve_correction",
        "curve_decimals",
        "min_curve_pairs",
    }
    conditions: dict[str, ProfileTolerance] = {}
    for source in sources:
        table = _read(source).get("gating", {})
        where = f"{source} [gating]"
        unknown = sorted(set(table) - scalar_keys - {"number_changing", "profile", "tolerances"})
        if unknown:
            raise GateConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        config = replace(config, **{k: table[k] for k in scalar_keys & set(table)})
        if "number_changing" in table:
            fields = table["number_changing"]
            if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
                raise GateConfigError(f"{where}.number_changing must be a list of dotted field names")
            config = replace(config, number_changing=tuple(fields))
        profile = dict(table.get("profile", {}))
        per_condition = profile.pop("conditions", {})
        config = replace(config, profile=_profile(profile, config.profile, f"{where}.profile"))
        for condition, override in per_condition.items():
            base = conditions.get(condition, config.profile)
            conditions[condition] = _profile(override, base, f"{where}.profile.conditions.{condition}")
    config = replace(config, profile_conditions=conditions)
    _check(config)
    return config


def _check(config: GateConfig) -> None:
    if not 0 < config.alpha < 1:
        raise GateConfigError(f"[gating] alpha must be in (0, 1), got {config.alpha!r}")
    if not 0 < config.confidence < 1:
        raise GateConfigError(f"[gating] confidence must be in (0, 1), got {config.confidence!r}")
    if isinstance(config.n_boot, bool) or not isinstance(config.n_boot, int) or config.n_boot < 100:
        raise GateConfigError(f"[gating] n_boot must be an integer >= 100, got {config.n_boot!r}")
    if config.resampling not in RESAMPLING:
        raise GateConfigError(f"[gating] resampling must be one of {', '.join(RESAMPLING)}, got {config.resampling!r}")
    if config.curve_correction not in CORRECTIONS:
        raise GateConfigError(
            f"[gating] curve_correction must be one of {', '.join(CORRECTIONS)}, got {config.curve_correction!r}"
        )
    for key in ("curve_decimals", "min_curve_pairs"):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise GateConfigError(f"[gating] {key} must be a non-negative integer, got {value!r}")
