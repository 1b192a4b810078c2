"""Conditions, windows, effective-pathway specs and exact edge counting.

An edge is an attention pair (query q, key k) with k <= q. A `Block` ``A->B`` removes every edge
whose key is in group A and whose query is in group B ("A -/-> B": B cannot read A). Everything
compiles to *rectangles* ``(query span, key span)``; blocked edges are the union of the
rectangles intersected with the causal triangle. Counting works on span arithmetic, never on
materialised n x n matrices.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from itertools import pairwise

import torch

from flowcheck.layout import GROUP_NAMES, LayoutError, Span, TokenLayout

Rect = tuple[Span, Span]
"""(query span, key span): every query in the first span loses every key in the second."""

CROSS_FRAME = "cross_frame"


class ConditionError(ValueError):
    """A condition or window specification that cannot be used."""


@dataclass(frozen=True)
class Block:
    """``source -> target``: queries in `target` may not read keys in `source`.

    The special block ``cross_frame`` stops every frame from reading earlier frames.
    """

    source: str
    target: str

    @property
    def is_cross_frame(self) -> bool:
        return self.source == CROSS_FRAME

    def rectangles(self, layout: TokenLayout) -> list[Rect]:
        if self.is_cross_frame:
            return [(f, Span(layout.video.start, f.start)) for f in layout.frames[1:]]
        return [(q, k) for q in layout.spans(self.target) for k in layout.spans(self.source)]

    def __str__(self) -> str:
        return CROSS_FRAME if self.is_cross_frame else f"{self.source}->{self.target}"

    @classmethod
    def parse(cls, text: str) -> Block:
        text = text.strip()
        if text == CROSS_FRAME:
            return cls(CROSS_FRAME, CROSS_FRAME)
        if "->" not in text:
            raise ConditionError(
                f"cannot read block {text!r}: write SOURCE->TARGET (e.g. video->question) or cross_frame"
            )
        source, target = (s.strip() for s in text.split("->", 1))
        for group in (source, target):
            base = group.split(":", 1)[0]
            if group not in GROUP_NAMES and base not in ("frame", "option"):
                raise ConditionError(
                    f"unknown token group {group!r} in {text!r}; known groups: {', '.join(GROUP_NAMES)}, "
                    "frame:<i>, option:<i>"
                )
        return cls(source, target)


@dataclass(frozen=True)
class Condition:
    """A named set of blocks, knocked out together."""

    name: str
    blocks: tuple[Block, ...]
    label: str = ""
    group: str = "custom"

    def rectangles(self, layout: TokenLayout) -> list[Rect]:
        return [r for b in self.blocks for r in b.rectangles(layout)]

    def earliest_query(self, layout: TokenLayout) -> int:
        """The first query position whose attention row this condition changes (n if none)."""
        starts = [q.start for q, k in self.rectangles(layout) if len(q) and len(k) and k.start <= q.end - 1]
        return min(starts, default=layout.n)

    @classmethod
    def parse(cls, spec: str, name: str | None = None) -> Condition:
        """A user-defined condition: blocks separated by ``+``, e.g. ``video->question+video->last``."""
        blocks = tuple(Block.parse(part) for part in spec.split("+"))
        return cls(name or spec, blocks, label=spec)


@cache
def _conditions_data() -> dict:
    return json.loads(resources.files("flowcheck.specs").joinpath("conditions.json").read_text())


def paper_conditions() -> dict[str, Condition]:
    """The paper's eleven conditions by name, in the authors' order."""
    out = {}
    for group, entries in _conditions_data()["groups"].items():
        for entry in entries:
            blocks = tuple(Block.parse(b) for b in entry["blocks"])
            out[entry["name"]] = Condition(entry["name"], blocks, entry["label"], group)
    return out


def condition_groups() -> dict[str, list[str]]:
    """The authors' analysis targets (``cross-frame``, ``vql-to-ql``, ...) -> condition names."""
    return {g: [e["name"] for e in entries] for g, entries in _conditions_data()["groups"].items()}


def resolve_conditions(names: Iterable[str]) -> list[Condition]:
    """Conditions from names: a paper condition, a condition group name, or a user spec such as ``video->post``."""
    known = paper_conditions()
    groups = condition_groups()
    out: list[Condition] = []
    for name in names:
        if name in known:
            out.append(known[name])
        elif name in groups:
            out.extend(known[n] for n in groups[name])
        elif name == "all":
            out.extend(known.values())
        else:
            try:
                out.append(Condition.parse(name))
            except ConditionError as err:
                raise ConditionError(
                    f"{err}. Paper conditions: {', '.join(known)}; condition groups: {', '.join(groups)}"
                ) from None
    return out


# ----------------------------------------------------------------------------------------------
# Windows


@dataclass(frozen=True)
class Window:
    """A set of layers a knockout is applied to; `center` is the swept layer (0-indexed)."""

    layers: tuple[int, ...]
    center: int | None = None
    style: str = "explicit"

    @property
    def first(self) -> int:
        return min(self.layers)

    def label(self) -> str:
        if self.center is not None:
            return f"{self.style}@{self.center}"
        return "layers " + ",".join(map(str, self.layers))


WINDOW_STYLES = ("center", "bottom_up", "top_down", "inverse")


def default_window_width(num_layers: int) -> int:
    """The paper's width 9 for models of 28 layers or more; shallower models keep the same share of depth.

    For L < 28 the width is the odd number nearest to 9 * L / 32 (at least 1): 8 layers -> 3,
    12 -> 3, 16 -> 5, 24 -> 7.
    """
    if num_layers >= 28:
        return 9
    return 2 * math.floor(9 * num_layers / 64) + 1


def make_window(num_layers: int, center: int, width: int | None = None, style: str = "center") -> Window:
    """One window of `style` around `center` (official-protocol.md 4.2)."""
    if not 0 <= center < num_layers:
        raise ConditionError(f"window centre {center} is outside the model's {num_layers} layers")
    k = default_window_width(num_layers) if width is None else width
    if k < 1:
        raise ConditionError(f"window width must be at least 1, got {k}")
    lo, hi = max(0, center - k // 2), min(num_layers, center - (-k // 2))
    if style == "center":
        layers = range(lo, hi)
    elif style == "inverse":
        layers = [i for i in range(num_layers) if not lo <= i < hi]
    elif style == "top_down":
        layers = range(center, num_layers)
    elif style == "bottom_up":
        layers = range(0, center + 1)
    else:
        raise ConditionError(f"unknown window style {style!r}; choose one of {', '.join(WINDOW_STYLES)}")
    if not layers:
        raise ConditionError(f"window {style}@{center} of width {k} selects no layer of {num_layers}")
    return Window(tuple(layers), center, style)


def sweep_windows(
    num_layers: int, width: int | None = None, style: str = "center", centers: Iterable[int] | None = None
) -> list[Window]:
    """Windows for every centre layer (or the given ones)."""
    return [make_window(num_layers, c, width, style) for c in (range(num_layers) if centers is None else centers)]


def explicit_window(layers: Iterable[int], num_layers: int) -> Window:
    """A window over an explicit set of layers."""
    chosen = tuple(sorted(set(layers)))
    if not chosen or chosen[0] < 0 or chosen[-1] >= num_layers:
        raise ConditionError(f"layers {list(chosen)} are not a non-empty subset of 0..{num_layers - 1}")
    return Window(chosen)


def parse_user_layers(text: str, num_layers: int) -> Window:
    """A layer range as users write it: ``"first_half"``, ``"second_half"``, ``"FIRST-LAST"`` or one layer, counted
    from 1 and inclusive (as `RouteSpec` and everything flowcheck shows); the window holds 0-based layers. Raises
    ConditionError naming the text and what to write."""
    text = str(text).strip()
    if text in ("first_half", "second_half"):
        return parse_layer_range(text, num_layers)
    span = _parse_layers(text, text, num_layers)
    if span is None:
        raise ConditionError(f"layers {text!r}: write first_half, second_half, FIRST-LAST or one layer (from 1)")
    return explicit_window(range(span[0], span[1] + 1), num_layers)


def parse_layer_range(text: str, num_layers: int) -> Window:
    """``"0:16"`` (half-open), ``"first_half"``, ``"second_half"`` or ``"3,5,7"``."""
    text = text.strip()
    if text == "first_half":
        return explicit_window(range(0, num_layers // 2), num_layers)
    if text == "second_half":
        return explicit_window(range(num_layers // 2, num_layers), num_layers)
    if ":" in text:
        a, b = text.split(":", 1)
        return explicit_window(range(int(a or 0), int(b or num_layers)), num_layers)
    return explicit_window((int(x) for x in text.split(",")), num_layers)


# ----------------------------------------------------------------------------------------------
# Masks and exact counting


def full_edges(n: int) -> int:
    """Causal pairs (including the diagonal) of one layer: n(n+1)/2."""
    return n * (n + 1) // 2


def blocked_mask(n: int, rects: Sequence[Rect], device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [n, n] mask, True where a causal edge (q, k), k <= q, is removed."""
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    for q, k in rects:
        mask[q.start : q.end, k.start : k.end] = True
    return mask & torch.ones(n, n, dtype=torch.bool, device=device).tril()


def _causal_count(q0: int, q1: int, k0: int, k1: int) -> int:
    """Number of pairs (q, k) with q in [q0, q1), k in [k0, k1), k <= q."""
    if q1 <= q0 or k1 <= k0:
        return 0
    # For each q the count is clamp(q + 1 - k0, 0, k1 - k0): zero below k0, a ramp, then flat.
    total = 0
    ramp_lo, ramp_hi = max(q0, k0), min(q1, k1 - 1)  # q with 1 <= q+1-k0 < k1-k0
    if ramp_hi > ramp_lo:
        a, b = ramp_lo + 1 - k0, ramp_hi - k0  # arithmetic series a..b
        total += (a + b) * (b - a + 1) // 2
    flat_lo = max(q0, k1 - 1)
    if q1 > flat_lo:
        total += (q1 - flat_lo) * (k1 - k0)
    return total


def count_blocked(n: int, rects: Sequence[Rect]) -> int:
    """Exact number of distinct causal edges removed by the union of `rects` (span arithmetic)."""
    rects = [(q, k) for q, k in rects if len(q) and len(k)]
    cuts = sorted({0, n, *(q.start for q, _ in rects), *(q.end for q, _ in rects)})
    total = 0
    for q0, q1 in pairwise(cuts):
        keys = sorted((k.start, k.end) for q, k in rects if q.start <= q0 and q1 <= q.end)
        merged: list[list[int]] = []
        for a, b in keys:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        total += sum(_causal_count(q0, q1, a, b) for a, b in merged)
    return total


def count_allowed(n: int, rects: Sequence[Rect]) -> int:
    """Causal edges of one layer left after removing `rects`."""
    return full_edges(n) - count_blocked(n, rects)


# ----------------------------------------------------------------------------------------------
# Effective pathways (Table 3) and the random control


ROUTE_MODES = ("keep", "block")
NO_LAYER = "none"


@dataclass(frozen=True)
class Route:
    """One route of a `RouteSpec`: a `Block` and the layers it refers to (0-indexed, inclusive; None: no layer).

    Written ``SOURCE->TARGET@FIRST-LAST`` with layers counted from 1, as everywhere flowcheck shows layers
    (README "Layers are counted from 1"; the paper's Table 3 and figures): ``video->question@6-20`` is layers 5..19
    of the Python API. ``@7`` is one layer, ``@none`` no layer, no ``@`` every layer.
    """

    block: Block
    layers: tuple[int, int] | None

    def covers(self, layer: int) -> bool:
        """Whether 0-indexed `layer` lies in the route's range."""
        return self.layers is not None and self.layers[0] <= layer <= self.layers[1]

    def text(self, num_layers: int) -> str:
        """The route in the spec syntax (layers from 1; no ``@`` when the range is every layer)."""
        if self.layers is None:
            return f"{self.block}@{NO_LAYER}"
        a, b = self.layers
        if (a, b) == (0, num_layers - 1):
            return str(self.block)
        return f"{self.block}@{a + 1}" if a == b else f"{self.block}@{a + 1}-{b + 1}"


def _parse_layers(token: str, text: str, num_layers: int) -> tuple[int, int] | None:
    """``"6-20"`` / ``"7"`` / ``"none"`` (layers from 1) as a 0-indexed inclusive range; errors name `token`."""
    if token.strip().lower() == NO_LAYER:
        return None
    parts = token.split("-")
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        first = last = None
    if first is None or last is None:
        raise ConditionError(
            f"cannot read layers {token!r} in {text!r}: write FIRST-LAST (layers counted from 1, inclusive), "
            f"one layer, or {NO_LAYER!r}"
        )
    if not 1 <= first <= last <= num_layers:
        raise ConditionError(
            f"layers {token!r} in {text!r} are not a range inside 1..{num_layers} (layers count from 1, inclusive)"
        )
    return first - 1, last - 1


@dataclass(frozen=True)
class RouteSpec:
    """Routes with layer ranges, applied as attention knockout in every layer at once.

    ``mode="block"``: each route's edges are removed in the layers of its range (knockout, the paper's Figs. 2-3
    with explicit layers). ``mode="keep"`` (keep-only, sufficiency): among the listed routes' edges, a route's edges
    are kept only in the layers of its range and removed in every other layer; an edge several listed routes cover
    is kept in a layer only when each of them keeps it (a ``cross_frame`` range inside a ``video->video`` one);
    edges of no listed route are never touched. The paper's effective pathways are one keep-only spec
    (`PathwaySpec.routes`, official-protocol.md 7.1).

    Syntax (`parse`): routes separated by commas, ``video->question@6-20, question->last@16-25, video->last@none``.
    """

    num_layers: int
    routes: tuple[Route, ...]
    mode: str = "keep"
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.mode not in ROUTE_MODES:
            raise ConditionError(f"unknown route-spec mode {self.mode!r}; use one of {', '.join(ROUTE_MODES)}")
        for route in self.routes:
            if route.layers is not None and not 0 <= route.layers[0] <= route.layers[1] < self.num_layers:
                raise ConditionError(
                    f"route {route.block} range {route.layers} (0-indexed) is outside the model's layers "
                    f"0..{self.num_layers - 1}"
                )

    @classmethod
    def parse(cls, text: str, num_layers: int, mode: str = "keep", name: str | None = None) -> RouteSpec:
        """A spec from its text (see the class docstring). Raises ConditionError naming the offending token."""
        routes = []
        for token in text.split(","):
            token = token.strip()
            if not token:
                raise ConditionError(f"empty route in {text!r}: routes are separated by single commas")
            block_text, _, layers_text = token.partition("@")
            try:
                block = Block.parse(block_text)
            except ConditionError as err:
                raise ConditionError(f"route {token!r}: {err}") from None
            every = (0, num_layers - 1)
            layers = _parse_layers(layers_text.strip(), token, num_layers) if "@" in token else every
            routes.append(Route(block, layers))
        seen = [str(r.block) for r in routes]
        twice = sorted({b for b in seen if seen.count(b) > 1})
        if twice:
            raise ConditionError(f"route {twice[0]!r} is listed twice in {text!r}; give each route one range")
        return cls(num_layers, tuple(routes), mode, name or text)

    def text(self) -> str:
        """The spec in its syntax (layers from 1); `parse(spec.text(), ...)` gives the spec back."""
        return ", ".join(route.text(self.num_layers) for route in self.routes)

    def range_of(self, block: str) -> tuple[int, int] | None:
        """The 0-indexed range of the route written `block` (e.g. ``"video->question"``); KeyError when absent."""
        for route in self.routes:
            if str(route.block) == block:
                return route.layers
        raise KeyError(f"no route {block!r} in {self.text()!r}")

    def layer_rectangles(self, layout: TokenLayout, layer: int) -> list[Rect]:
        """Rectangles removed in one (0-indexed) layer."""
        rects: list[Rect] = []
        for route in self.routes:
            if route.covers(layer) == (self.mode == "block"):
                rects += route.block.rectangles(layout)
        return rects

    def plan(self, layout: TokenLayout) -> list[list[Rect]]:
        """Rectangles removed per layer, for every layer."""
        return [self.layer_rectangles(layout, layer) for layer in range(self.num_layers)]

    def blocked_per_layer(self, layout: TokenLayout) -> list[int]:
        """Exact number of removed causal edges in each layer."""
        return [count_blocked(layout.n, rects) for rects in self.plan(layout)]

    def kept_edges(self, layout: TokenLayout) -> EdgeSummary:
        """Full vs kept edges summed over layers (one head)."""
        full = full_edges(layout.n) * self.num_layers
        return EdgeSummary(full, full - sum(self.blocked_per_layer(layout)))


PATHWAY_ROUTES = ("cross_frame", "video->question", "question->last", "video->last", "last->last")
"""The routes of the effective pathways (official-protocol.md 7.1), each a knockout condition of the sweep."""


def effective_pathway_routes(
    num_layers: int,
    ranges: dict[str, tuple[int, int] | None],
    name: str = "custom",
    extra: Sequence[Route] = (),
) -> RouteSpec:
    """The effective pathways as one keep-only spec, from a 0-indexed inclusive range (or None) per route.

    `ranges` maps routes of `PATHWAY_ROUTES` to where they are kept; a route absent or None is removed in every
    layer (the paper blocks video->last and last->last everywhere). As in the authors' code (official-protocol.md
    7.1), video->video is kept up to the last layer in which a route reading the video (video->question,
    video->last) is kept, and question->question up to the last layer in which question->last is kept; each is
    removed in every layer when no such route is kept. `extra` routes (user routes) are appended as they are.
    Raises ConditionError on an unknown route.
    """
    unknown = set(ranges) - set(PATHWAY_ROUTES)
    if unknown:
        raise ConditionError(f"unknown pathway route(s) {sorted(unknown)}; known: {', '.join(PATHWAY_ROUTES)}")

    def until(*routes: str) -> tuple[int, int] | None:
        ends = [r[1] for r in (ranges.get(route) for route in routes) if r is not None]
        return (0, max(ends)) if ends else None

    routes = [Route(Block.parse(route), ranges.get(route)) for route in PATHWAY_ROUTES]
    routes.append(Route(Block("video", "video"), until("video->question", "video->last")))
    routes.append(Route(Block("question", "question"), until("question->last")))
    return RouteSpec(num_layers, (*routes, *extra), "keep", name)


@dataclass(frozen=True)
class PathwaySpec:
    """Layer ranges (0-indexed, inclusive) in which the effective pathways keep their edges (Table 3).

    Outside `cross_frame` frames cannot read earlier frames; outside `video_to_question` the
    question cannot read the video; outside `question_to_last` the last token cannot read the
    question; video->last and last->last are blocked everywhere; video->video is blocked after
    the video->question range and question->question after the question->last range
    (official-protocol.md 7.1). System and post-prompt tokens are never constrained. The masks come from
    one keep-only `RouteSpec` (`routes`).
    """

    num_layers: int
    cross_frame: tuple[int, int]
    video_to_question: tuple[int, int]
    question_to_last: tuple[int, int]
    name: str = "custom"
    random_block_ratio: float | None = None
    paper: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for label, (a, b) in (
            ("cross_frame", self.cross_frame),
            ("video_to_question", self.video_to_question),
            ("question_to_last", self.question_to_last),
        ):
            if not 0 <= a <= b < self.num_layers:
                raise ConditionError(
                    f"pathway range {label}=[{a}, {b}] is not inside the model's layers 0..{self.num_layers - 1}"
                )

    def routes(self) -> RouteSpec:
        """The same pathways as a keep-only `RouteSpec`."""
        return effective_pathway_routes(
            self.num_layers,
            {
                "cross_frame": self.cross_frame,
                "video->question": self.video_to_question,
                "question->last": self.question_to_last,
            },
            name=self.name,
        )

    def layer_rectangles(self, layout: TokenLayout, layer: int) -> list[Rect]:
        """Rectangles removed in one layer."""
        return self.routes().layer_rectangles(layout, layer)

    def plan(self, layout: TokenLayout) -> list[list[Rect]]:
        """Rectangles removed per layer, for every layer."""
        return self.routes().plan(layout)

    def blocked_per_layer(self, layout: TokenLayout) -> list[int]:
        """Exact number of removed edges in each layer."""
        return self.routes().blocked_per_layer(layout)

    @classmethod
    def from_dict(cls, d: dict, name: str = "custom") -> PathwaySpec:
        return cls(
            num_layers=int(d["num_layers"]),
            cross_frame=tuple(d["cross_frame"]),
            video_to_question=tuple(d["video_to_question"]),
            question_to_last=tuple(d["question_to_last"]),
            name=name,
            random_block_ratio=d.get("random_block_ratio"),
            paper=d.get("paper", {}),
        )


@cache
def _pathways_data() -> dict:
    return json.loads(resources.files("flowcheck.specs").joinpath("pathways.json").read_text())


def paper_pathways() -> dict[str, PathwaySpec]:
    """Effective-pathway specs of the paper's four models (Table 3)."""
    return {name: PathwaySpec.from_dict(d, name) for name, d in _pathways_data()["models"].items()}


def reference_layout(model: str) -> TokenLayout:
    """A representative layout of one of the paper's models (token counts in pathways.json)."""
    from flowcheck.layout import synthetic_layout

    shape = _pathways_data()["models"][model]["reference_layout"]
    return synthetic_layout(**shape)


@dataclass(frozen=True)
class EdgeSummary:
    """Edges summed over layers for one layout."""

    full: int
    kept: int

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.full


def pathway_edges(spec: PathwaySpec, layout: TokenLayout) -> EdgeSummary:
    """Full vs kept edges of the effective pathways, summed over layers (one head)."""
    full = full_edges(layout.n) * spec.num_layers
    return EdgeSummary(full, full - sum(spec.blocked_per_layer(layout)))


def random_candidate_count(layout: TokenLayout) -> int:
    """Causal pairs whose query and key are both at or after the first video token."""
    return full_edges(layout.n - layout.video.start)


def matched_random_counts(blocked_per_layer: Sequence[int], mode: str = "uniform") -> list[int]:
    """Edges the random control removes per layer.

    ``uniform`` (the authors' scheme): the same number in every layer, with the same total as
    the effective pathways (the remainder goes to the first layers). ``per_layer``: exactly as
    many as the effective pathways remove in each layer.
    """
    if mode == "per_layer":
        return list(blocked_per_layer)
    if mode != "uniform":
        raise ConditionError(f"unknown random-control mode {mode!r}; use 'uniform' or 'per_layer'")
    total, layers = sum(blocked_per_layer), len(blocked_per_layer)
    base, rem = divmod(total, layers)
    return [base + (1 if i < rem else 0) for i in range(layers)]


def _seed_for(seed: int, key: str, layer: int) -> int:
    digest = hashlib.sha256(f"{seed}|{key}|{layer}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def random_blocked_mask(
    layout: TokenLayout, count: int, *, seed: int, key: str = "", layer: int = 0, device: str = "cpu"
) -> torch.Tensor:
    """Boolean [n, n] mask removing `count` causal edges drawn uniformly among pairs at or after the video.

    Reproducible from (seed, key, layer), independent of call order; `key` is usually the sample id.
    """
    n, v0 = layout.n, layout.video.start
    candidates = random_candidate_count(layout)
    if not 0 <= count <= candidates:
        raise ConditionError(
            f"cannot remove {count} random edges: only {candidates} causal pairs lie at or after the video"
        )
    gen = torch.Generator().manual_seed(_seed_for(seed, key, layer))
    picks = torch.randperm(candidates, generator=gen)[:count].to(torch.float64)
    # linear index t over the lower triangle of size m -> (row r, column c) with c <= r
    rows = torch.floor((torch.sqrt(8 * picks + 1) - 1) / 2)
    cols = picks - rows * (rows + 1) / 2
    over = cols > rows  # guard against float rounding at triangle boundaries
    rows, cols = torch.where(over, rows + 1, rows), torch.where(over, cols - rows - 1, cols)
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[rows.long() + v0, cols.long() + v0] = True
    return mask.to(device)


def check_layout_for(condition: Condition, layout: TokenLayout) -> None:
    """Raise a clear error when a condition needs a group the layout does not have."""
    for block in condition.blocks:
        if block.is_cross_frame:
            if len(layout.frames) < 2:
                raise LayoutError(f"condition {condition.name} needs at least two frames; the layout has one")
            continue
        for group in (block.source, block.target):
            if not layout.spans(group):
                raise LayoutError(f"condition {condition.name} needs group {group!r}, which this layout lacks")
