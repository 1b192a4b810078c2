"""Pathway discovery on constructed curves, the seeded split and the minimal-pathway search."""

from __future__ import annotations

import random

import pytest

from flowcheck.analyses.curves import Curve
from flowcheck.analyses.pathways import discover, minimal_pathways, route_range, split_samples
from flowcheck.edges import RouteSpec, effective_pathway_routes
from flowcheck.layout import synthetic_layout


def curve(mean, half_width=2.0, n=20, name="video->question"):
    """A curve over centres 0..len-1 with a CI of +-half_width around each mean."""
    return Curve(
        name, list(range(len(mean))), list(mean), [m - half_width for m in mean], [m + half_width for m in mean], n
    )


def test_known_range_is_recovered_as_the_layers_of_the_counted_windows():
    c = curve([0, -1, -20, -30, -25, -2, 0, 0])
    found = route_range(c, "video->question", 8, window=3)
    assert found.centres == (2, 4)  # -20, -30, -25 count; -2 is above -5%
    assert found.layers == (1, 5)  # window 3 around centres 2..4
    assert (found.minimum, found.at) == (-30, 3)
    assert route_range(c, "video->question", 8, window=3, thresholds={"layers_from": "centres"}).layers == (2, 4)
    assert route_range(c, "video->question", 8, window=5).layers == (0, 6)


def test_flat_curve_gives_no_range():
    found = route_range(curve([0.0] * 8, half_width=0.5), "cross_frame", 8, window=3)
    assert found.layers is None and "max_change_pct" in found.reason


def test_noise_within_the_ci_is_not_a_range():
    noisy = curve([0, 1, -3, -8, -1, 2, 0, 0], half_width=10.0)  # the dip's CI reaches +2
    found = route_range(noisy, "question->last", 8, window=3)
    assert found.layers is None and "CI" in found.reason
    # the same dip with a tight CI counts
    assert route_range(curve([0, 1, -3, -8, -1, 2, 0, 0], 1.0), "question->last", 8, window=3).layers == (2, 4)


def test_range_stays_contiguous_around_the_minimum():
    c = curve([-12, 0, 0, 0, -40, -35, 0, 0])  # a second dip at 0 is not joined
    assert route_range(c, "video->question", 8, window=1).layers == (4, 5)


def test_too_few_samples_give_no_range():
    found = route_range(curve([0, -50, -50, 0], n=3), "video->question", 4, window=1)
    assert found.layers is None and "min_samples" in found.reason


def test_discovered_spec_keeps_the_routes_that_matter_and_blocks_the_rest():
    curves = {
        "cross_frame": curve([0, -10, -12, -1, 0, 0, 0, 0], 1, name="cross_frame"),
        "video->question": curve([0, 0, -5.5, -30, -6, 0, 0, 0], 1),
        "question->last": curve([0, 0, 0, 0, -3, -40, -45, -8], 1, name="question->last"),
        "video->last": curve([0, 0, 0, 0, 0, -20, -1, 0], 1, name="video->last"),
        "last->last": curve([0.5] * 8, 1, name="last->last"),
        "video->post": curve([0, -9, 0, 0, 0, 0, 0, 0], 1, name="video->post"),
        "post->last": curve([0.0] * 8, 1, name="post->last"),
    }
    found = discover(curves, 8, window=1)
    spec = found.spec
    assert spec.mode == "keep"
    assert spec.range_of("cross_frame") == (1, 2)
    assert spec.range_of("video->question") == (2, 4)
    assert spec.range_of("question->last") == (5, 7)
    assert spec.range_of("video->last") == (5, 5)
    assert spec.range_of("last->last") is None
    assert spec.range_of("video->video") == (0, 5)  # up to the last layer a route reading the video is kept
    assert spec.range_of("video->post") == (1, 1)
    with pytest.raises(KeyError):
        spec.range_of("post->last")  # a user route without a range is not constrained
    assert found.finding("post->last").layers is None
    assert found.to_dict()["routes"]["video->question"]["layers"] == [3, 5]  # shown from 1


def test_split_is_deterministic_from_the_seed_and_stratified_by_task():
    samples = [(f"{task}/{i}", task) for task in ("a", "b") for i in range(11)]
    d1, v1 = split_samples(samples, seed=3)
    d2, v2 = split_samples(list(reversed(samples)), seed=3)
    assert (d1, v1) == (d2, v2)
    assert sorted(d1 + v1) == sorted(s for s, _ in samples) and not set(d1) & set(v1)
    assert sum(s.startswith("a/") for s in d1) == 5 and sum(s.startswith("b/") for s in d1) == 5
    assert split_samples(samples, seed=4)[0] != d1
    with pytest.raises(ValueError, match="discovery_fraction"):
        split_samples(samples, seed=0, discovery_fraction=1.0)


def _layout():
    return synthetic_layout(
        system=2, frames=3, tokens_per_frame=3, between=1, question_only=2, option_lengths=[2, 2], post=2
    )


@pytest.mark.parametrize("seed", range(6))
def test_minimal_search_never_accepts_a_spec_failing_the_tolerance(seed):
    rng = random.Random(seed)
    table: dict[str, float] = {}

    def accuracy(spec: RouteSpec) -> float:  # an arbitrary, adversarial accuracy per spec
        return table.setdefault(spec.text(), rng.choice([100.0, 99.5, 98.0, 90.0]))

    lay = _layout()
    start = effective_pathway_routes(8, {"cross_frame": (1, 4), "video->question": (1, 5), "question->last": (3, 7)})
    table[start.text()] = 100.0
    result = minimal_pathways(
        start,
        accuracy,
        lambda s: s.kept_edges(lay).kept_fraction,
        full_accuracy=100.0,
        max_loss_points=1.0,
        forwards_per_spec=10,
        max_forwards=400,
    )
    assert result.within_tolerance and 100.0 - table[result.spec.text()] <= 1.0
    assert all(step.accepted == (100.0 - step.accuracy <= 1.0) for step in result.steps)
    assert result.forwards <= 400 and result.forwards == 10 * len(result.steps)
    assert result.kept_fraction <= result.steps[0].kept_fraction


def test_minimal_search_narrows_to_the_layers_that_matter():
    lay = _layout()
    needed = {"cross_frame": set(), "video->question": {3}, "question->last": {5, 6}}

    def accuracy(spec: RouteSpec) -> float:  # accuracy stays only while the needed layers are kept
        for route, layers in needed.items():
            r = spec.range_of(route)
            if layers and (r is None or not all(r[0] <= la <= r[1] for la in layers)):
                return 50.0
        return 100.0

    start = effective_pathway_routes(8, {"cross_frame": (1, 4), "video->question": (1, 5), "question->last": (3, 7)})
    result = minimal_pathways(
        start,
        accuracy,
        lambda s: s.kept_edges(lay).kept_fraction,
        full_accuracy=100.0,
        max_loss_points=1.0,
        forwards_per_spec=1,
        max_forwards=1000,
    )
    assert result.spec.range_of("cross_frame") is None
    assert result.spec.range_of("video->question") == (3, 3)
    assert result.spec.range_of("question->last") == (5, 6)
    assert not result.exhausted
    stopped = minimal_pathways(
        start,
        accuracy,
        lambda s: s.kept_edges(lay).kept_fraction,
        full_accuracy=100.0,
        max_loss_points=1.0,
        forwards_per_spec=1,
        max_forwards=3,
    )
    assert stopped.exhausted and stopped.forwards == 3
