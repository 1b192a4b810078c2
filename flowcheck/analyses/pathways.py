"""Effective pathways from a model's own knockout curves: the discovery rule, the seeded discovery/validation split
and the greedy minimal-pathway search.

The paper's Table 3 ranges were picked by hand from the authors' curves of four models (official-protocol.md 7.1).
Here every route's range is read off the model's own mean relative-change curves by a fixed rule whose thresholds
are data (flowcheck/specs/pathway_discovery.toml):

1. a window centre *counts* when its mean relative change is <= ``max_change_pct`` and (``ci_excludes_zero``) the
   upper bound of its 95% CI is below 0;
2. from the curve's minimum, the range grows over contiguous counted centres; a minimum that does not count, or a
   curve on fewer than ``min_samples`` samples, gives no range;
3. the range is the union of the layers of the counted windows (``layers_from = "windows"``) or the centres only.

Routes are the paper's (`flowcheck.edges.PATHWAY_ROUTES`: cross-frame, video->question, question->last,
video->last, last->last) and any single-block user condition of the sweep. A paper route without a range is
removed in every layer, as the paper's protocol removes video->last and last->last; a user route is listed (kept
in its range, removed elsewhere) only when it has one. Discovery pools every task of the dataset.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

import tomllib

from flowcheck.analyses.curves import Curve
from flowcheck.edges import (
    CROSS_FRAME,
    PATHWAY_ROUTES,
    Block,
    ConditionError,
    Route,
    RouteSpec,
    effective_pathway_routes,
    make_window,
    paper_conditions,
)


@cache
def discovery_settings() -> dict[str, Any]:
    """flowcheck/specs/pathway_discovery.toml as a dict (sections discovery, split, random_control, minimal)."""
    return tomllib.loads(resources.files("flowcheck.specs").joinpath("pathway_discovery.toml").read_text())


# ----------------------------------------------------------------------------------------------
# Discovery


@dataclass(frozen=True)
class RouteFinding:
    """One route's discovered range: `layers` (0-indexed, inclusive; None: none), the counted window centres,
    the curve minimum (relative change, %) and its centre, the samples `n` and, without a range, the reason."""

    route: str
    layers: tuple[int, int] | None
    centres: tuple[int, int] | None
    minimum: float | None
    at: int | None
    n: int
    reason: str = ""

    def describe(self) -> str:
        """``layers 3-6 (minimum -42.1% at layer 5, n=20)`` with layers from 1, or the reason for no range."""
        where = f"minimum {self.minimum:.1f}% at layer {self.at + 1}, n={self.n}" if self.at is not None else ""
        if self.layers is None:
            return f"none ({self.reason}{'; ' + where if where and where not in self.reason else ''})"
        a, b = self.layers
        return f"layers {a + 1}-{b + 1} ({where})"


@dataclass(frozen=True)
class Discovery:
    """Discovered ranges of every route and the keep-only spec they make."""

    num_layers: int
    findings: tuple[RouteFinding, ...]
    spec: RouteSpec
    thresholds: Mapping[str, Any] = field(default_factory=dict)

    def finding(self, route: str) -> RouteFinding:
        for f in self.findings:
            if f.route == route:
                return f
        raise KeyError(f"no finding for route {route!r}; routes: {', '.join(f.route for f in self.findings)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.text(),
            "routes": {
                f.route: {
                    "layers": None if f.layers is None else [f.layers[0] + 1, f.layers[1] + 1],
                    "minimum_pct": f.minimum,
                    "at_layer": None if f.at is None else f.at + 1,
                    "n": f.n,
                    "reason": f.reason,
                }
                for f in self.findings
            },
            "layer_index_base": 1,
            "thresholds": dict(self.thresholds),
        }


def route_range(
    curve: Curve | None,
    route: str,
    num_layers: int,
    *,
    window: int | None = None,
    thresholds: Mapping[str, Any] | None = None,
) -> RouteFinding:
    """The layer range where `route` matters, by the module's rule, from its curve (centres 0-indexed, values in %).

    `window`: the sweep's window width (None: `flowcheck.edges.default_window_width`). Raises ConditionError for an
    unknown ``layers_from``."""
    t = {**discovery_settings()["discovery"], **(thresholds or {})}
    if curve is None or not curve.centers:
        return RouteFinding(route, None, None, None, None, 0, "no knockout curve for this route in the sweep")
    values = list(zip(curve.centers, curve.mean, curve.hi, strict=True))
    i_min = min(range(len(values)), key=lambda i: values[i][1])
    at, minimum = values[i_min][0], values[i_min][1]
    if curve.n < t["min_samples"]:
        return RouteFinding(route, None, None, minimum, at, curve.n, f"n={curve.n} < min_samples={t['min_samples']}")

    def counts(i: int) -> bool:
        _, mean, hi = values[i]
        return mean <= t["max_change_pct"] and (not t["ci_excludes_zero"] or hi < 0)

    if not counts(i_min):
        why = (
            f"minimum {minimum:.2f}% > max_change_pct={t['max_change_pct']}"
            if minimum > t["max_change_pct"]
            else f"CI at the minimum reaches {values[i_min][2]:.2f}% >= 0"
        )
        return RouteFinding(route, None, None, minimum, at, curve.n, why)
    lo = hi = i_min
    while lo > 0 and counts(lo - 1) and values[lo - 1][0] == values[lo][0] - 1:
        lo -= 1
    while hi < len(values) - 1 and counts(hi + 1) and values[hi + 1][0] == values[hi][0] + 1:
        hi += 1
    centres = (values[lo][0], values[hi][0])
    if t["layers_from"] == "centres":
        layers = centres
    elif t["layers_from"] == "windows":
        layers = (
            make_window(num_layers, centres[0], window).layers[0],
            make_window(num_layers, centres[1], window).layers[-1],
        )
    else:
        raise ConditionError(f"layers_from must be 'windows' or 'centres', got {t['layers_from']!r}")
    return RouteFinding(route, layers, centres, minimum, at, curve.n)


def user_routes(conditions: Iterable[str]) -> list[str]:
    """Sweep conditions that are single-block routes beyond the paper's (e.g. ``video->post``)."""
    paper = set(paper_conditions())
    out = []
    for name in conditions:
        if name in paper or "+" in name or name == CROSS_FRAME:
            continue
        try:
            Block.parse(name)
        except ConditionError:
            continue
        out.append(name)
    return sorted(out)


def discover(
    curves: Mapping[str, Curve],
    num_layers: int,
    *,
    window: int | None = None,
    thresholds: Mapping[str, Any] | None = None,
    name: str = "discovered",
) -> Discovery:
    """Discovered ranges of every route with a curve in `curves` (condition name -> `Curve`, the sweep's summary)
    and the keep-only spec (`flowcheck.edges.effective_pathway_routes` plus user routes with a range)."""
    t = {**discovery_settings()["discovery"], **(thresholds or {})}
    findings = [route_range(curves.get(r), r, num_layers, window=window, thresholds=t) for r in PATHWAY_ROUTES]
    extra_findings = [route_range(curves[r], r, num_layers, window=window, thresholds=t) for r in user_routes(curves)]
    extra = [Route(Block.parse(f.route), f.layers) for f in extra_findings if f.layers is not None]
    spec = effective_pathway_routes(num_layers, {f.route: f.layers for f in findings}, name=name, extra=extra)
    return Discovery(num_layers, (*findings, *extra_findings), spec, t)


# ----------------------------------------------------------------------------------------------
# Discovery / validation split


def _rank(seed: int, sample_id: str) -> str:
    return hashlib.sha256(f"{seed}|{sample_id}".encode()).hexdigest()


def split_samples(
    samples: Iterable[tuple[str, str]], seed: int, discovery_fraction: float | None = None
) -> tuple[list[str], list[str]]:
    """Seeded split of (sample id, task) pairs into (discovery ids, validation ids), stratified by task.

    Within each task the ids are ordered by sha256(f"{seed}|{id}") and the first floor(fraction * n) go to
    discovery (an odd sample goes to validation). Deterministic from the seed and the ids (not their order).
    `discovery_fraction` defaults to ``[split] discovery_fraction``; raises ValueError outside (0, 1)."""
    fraction = discovery_settings()["split"]["discovery_fraction"] if discovery_fraction is None else discovery_fraction
    if not 0 < fraction < 1:
        raise ValueError(f"discovery_fraction must lie in (0, 1), got {fraction}")
    by_task: dict[str, set[str]] = defaultdict(set)
    for sample_id, task in samples:
        by_task[task].add(sample_id)
    discovery, validation = [], []
    for task in sorted(by_task):
        ranked = sorted(by_task[task], key=lambda s: _rank(seed, s))
        k = int(fraction * len(ranked))
        discovery += ranked[:k]
        validation += ranked[k:]
    return discovery, validation


# ----------------------------------------------------------------------------------------------
# Minimal pathways


@dataclass(frozen=True)
class SearchStep:
    """One candidate of the minimal-pathway search: the spec (syntax, layers from 1), its validation accuracy (%),
    its kept-edge fraction and whether it was accepted (within the tolerance)."""

    spec: str
    accuracy: float
    kept_fraction: float
    accepted: bool


@dataclass
class MinimalPathways:
    """The search's result: the narrowest accepted spec, its accuracy and kept fraction, every step, the forwards
    spent and whether the budget stopped the search (`exhausted`)."""

    spec: RouteSpec
    accuracy: float
    kept_fraction: float
    full_accuracy: float
    max_loss_points: float
    steps: list[SearchStep]
    forwards: int
    exhausted: bool

    @property
    def within_tolerance(self) -> bool:
        return self.full_accuracy - self.accuracy <= self.max_loss_points


def _narrowed(spec: RouteSpec, index: int, layers: tuple[int, int] | None) -> RouteSpec:
    routes = list(spec.routes)
    routes[index] = Route(routes[index].block, layers)
    return replace(spec, routes=tuple(routes))


def minimal_pathways(
    start: RouteSpec,
    accuracy: Callable[[RouteSpec], float],
    kept_fraction: Callable[[RouteSpec], float],
    *,
    full_accuracy: float,
    max_loss_points: float,
    forwards_per_spec: int,
    max_forwards: int,
    routes: Sequence[str] = ("cross_frame", "video->question", "question->last", "video->last"),
) -> MinimalPathways:
    """Greedy narrowing of `routes`' ranges of a keep-only `start` spec while validation accuracy stays within
    `max_loss_points` (accuracy points) of `full_accuracy`.

    Each round tries, route by route, dropping the first layer of its range, then the last (a one-layer range
    becomes no layer); the first candidate within the tolerance is taken. Rounds repeat until none is taken or the
    next candidate would exceed `max_forwards` (`forwards_per_spec` each: one per validation sample). `start` is
    evaluated first; when it fails the tolerance it is returned as it is (`within_tolerance` False). A spec that
    fails the tolerance is never returned otherwise. `accuracy(spec)`: validation accuracy in %;
    `kept_fraction(spec)`: kept edges / full edges. Video->video and question->question follow the narrowed
    ranges only through the routes given. Raises ValueError for a block-mode spec."""
    if start.mode != "keep":
        raise ValueError("the minimal-pathway search narrows a keep-only spec")
    steps: list[SearchStep] = []
    spent = 0

    def evaluate(spec: RouteSpec) -> SearchStep:
        nonlocal spent
        spent += forwards_per_spec
        acc = accuracy(spec)
        step = SearchStep(spec.text(), acc, kept_fraction(spec), full_accuracy - acc <= max_loss_points)
        steps.append(step)
        return step

    first = evaluate(start)
    best, best_step = start, first
    exhausted = False
    if first.accepted:
        improved = True
        while improved and not exhausted:
            improved = False
            for i, route in enumerate(best.routes):
                if str(route.block) not in routes or route.layers is None:
                    continue
                a, b = route.layers
                candidates = [None] if a == b else [(a + 1, b), (a, b - 1)]
                for layers in candidates:
                    if spent + forwards_per_spec > max_forwards:
                        exhausted = True
                        break
                    candidate = _narrowed(best, i, layers)
                    step = evaluate(candidate)
                    if step.accepted:
                        best, best_step, improved = candidate, step, True
                        break
                if exhausted:
                    break
    return MinimalPathways(
        best,
        best_step.accuracy,
        best_step.kept_fraction,
        full_accuracy,
        max_loss_points,
        steps,
        spent,
        exhausted,
    )
