"""The synthetic tasks. Each draws one scene and returns its *twin group*.

A twin group is a list of videos that share their options and the multiset of their 8 frames
but differ in their answer, one video per answer. So no function of an unordered set of frames
(nor of any single frame's content) can do better than chance on a temporal task: the order of
the frames is the only evidence. Every video is 8 frame *slots*; the writer spreads them over 16
source frames so that sampling 8 frames at segment centres returns the slots exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from flowcheck.data.paper_tasks import TEMPORAL_TASKS
from flowcheck.data.synth_render import (
    FRAME_SIZE,
    OBJECT_COLOURS,
    OBJECT_SIZE,
    SCENE_COLOURS,
    SHAPES,
    Sprite,
    render,
)

SLOTS = 8
SPATIAL_TASK = "spatial_attribute"
TASKS = (*TEMPORAL_TASKS, SPATIAL_TASK)

_QUADRANTS = ((0, 0), (16, 0), (0, 16), (16, 16))  # top-left corners (x, y) of the four 16-px quadrants


@dataclass
class SynthVideo:
    """One generated question: 8 frame slots (uint8 [8, H, W, 3]), question, options, answer."""

    slots: np.ndarray
    question: str
    options: tuple[str, ...]
    answer_index: int
    task: str

    @property
    def answer(self) -> str:
        return self.options[self.answer_index]


def _pick(rng: np.random.Generator, items, k: int = 1) -> list:
    return [items[i] for i in rng.choice(len(items), size=k, replace=False)]


def _sprite_in_quadrant(rng: np.random.Generator, quadrant: int, shape: str, colour: str) -> Sprite:
    qx, qy = _QUADRANTS[quadrant]
    return Sprite(
        shape, colour, qx + int(rng.integers(1, 16 - OBJECT_SIZE)), qy + int(rng.integers(1, 16 - OBJECT_SIZE))
    )


SPATIAL_OBJECT_SIZE = 12


def _centred_in_quadrant(quadrant: int, shape: str, colour: str) -> Sprite:
    qx, qy = _QUADRANTS[quadrant]
    margin = (16 - SPATIAL_OBJECT_SIZE) // 2
    return Sprite(shape, colour, qx + margin, qy + margin, SPATIAL_OBJECT_SIZE)


def _objects(rng: np.random.Generator, count: int) -> list[tuple[str, str]]:
    """`count` (shape, colour) pairs with distinct colours."""
    colours = _pick(rng, OBJECT_COLOURS, count)
    return [(str(_pick(rng, SHAPES)[0]), c) for c in colours]


def _stack(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack(frames).astype(np.uint8)


def _canonical(options: list[str], order: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Options in a fixed order (by `order` when given, else as listed): letters then depend only on answers."""
    return tuple(sorted(options, key=order.index) if order else options)


def moving_direction(rng: np.random.Generator) -> list[SynthVideo]:
    """An object moves along one axis; its time-reversed twin moves the other way."""
    (shape, colour), (d_shape, d_colour) = _objects(rng, 2)
    horizontal = bool(rng.integers(2))
    step = 3
    travel = step * (SLOTS - 1)
    start = int(rng.integers(0, FRAME_SIZE - OBJECT_SIZE - travel + 1))
    across = int(rng.integers(0, FRAME_SIZE - OBJECT_SIZE + 1))
    positions = [start + step * t for t in range(SLOTS)]
    # the distractor stays out of the target's lane
    lane = list(range(0, across - OBJECT_SIZE)) + list(range(across + OBJECT_SIZE + 1, FRAME_SIZE - OBJECT_SIZE + 1))
    along, off = int(rng.integers(0, FRAME_SIZE - OBJECT_SIZE + 1)), int(rng.choice(lane))
    distractor = Sprite(d_shape, d_colour, along, off) if horizontal else Sprite(d_shape, d_colour, off, along)
    frames = []
    for p in positions:
        target = Sprite(shape, colour, p, across) if horizontal else Sprite(shape, colour, across, p)
        frames.append(render([distractor, target]))
    forward = _stack(frames)
    names = ("right", "left") if horizontal else ("down", "up")
    options = _canonical(list(names), ("left", "right", "up", "down"))
    question = f"Which direction does the {colour} {shape} move?"
    return [
        SynthVideo(forward, question, options, options.index(names[0]), "moving_direction"),
        SynthVideo(forward[::-1].copy(), question, options, options.index(names[1]), "moving_direction"),
    ]


def _switch_sequences(switches: int) -> list[tuple[int, ...]]:
    """All 0/1 sequences of length 8 with four of each value, starting with 0, and `switches` changes."""
    out = []
    for code in range(1 << SLOTS):
        seq = tuple((code >> (SLOTS - 1 - i)) & 1 for i in range(SLOTS))
        if seq[0] == 0 and sum(seq) == SLOTS // 2 and sum(a != b for a, b in pairwise(seq)) == switches:
            out.append(seq)
    return out


COUNT_OPTIONS = ("1", "2", "3", "4")


def object_count(rng: np.random.Generator) -> list[SynthVideo]:
    """An object jumps between two places 1-4 times, always four frames at each place."""
    (shape, colour), (d_shape, d_colour) = _objects(rng, 2)
    qa, qb = _pick(rng, [(0, 3), (3, 0), (1, 2), (2, 1)])[0]
    place = [_sprite_in_quadrant(rng, qa, shape, colour), _sprite_in_quadrant(rng, qb, shape, colour)]
    free = [q for q in range(4) if q not in (qa, qb)]
    distractor = _sprite_in_quadrant(rng, int(rng.choice(free)), d_shape, d_colour)
    options = COUNT_OPTIONS
    question = f"How many times does the {colour} {shape} move?"
    videos = []
    for switches in range(1, 5):
        choices = _switch_sequences(switches)
        seq = choices[int(rng.integers(len(choices)))]
        frames = [render([distractor, place[s]]) for s in seq]
        videos.append(SynthVideo(_stack(frames), question, options, switches - 1, "object_count"))
    return videos


def scene_transition(rng: np.random.Generator) -> list[SynthVideo]:
    """The background changes colour once; the twin changes the other way."""
    first, second = _pick(rng, SCENE_COLOURS, 2)
    k = int(rng.integers(2, SLOTS - 1))
    objs = [
        _sprite_in_quadrant(rng, q, s, c) for q, (s, c) in zip(_pick(rng, range(4), 2), _objects(rng, 2), strict=True)
    ]
    forward = _stack([render(objs, first if t < k else second) for t in range(SLOTS)])
    names = (f"from {first} to {second}", f"from {second} to {first}")
    options = _canonical(sorted(names))
    question = "How does the scene change?"
    return [
        SynthVideo(forward, question, options, options.index(names[0]), "scene_transition"),
        SynthVideo(forward[::-1].copy(), question, options, options.index(names[1]), "scene_transition"),
    ]


PULSE_SIZE = 14


def action_sequence(rng: np.random.Generator) -> list[SynthVideo]:
    """Four objects (one per quadrant) each pulse (grow for one frame) once; each twin has a different first."""
    objs = [_sprite_in_quadrant(rng, q, s, c) for q, (s, c) in enumerate(_objects(rng, 4))]
    pulse_slots = sorted(int(s) for s in rng.choice(SLOTS, size=4, replace=False))
    order = list(rng.permutation(4))
    by_colour = sorted(objs, key=lambda o: OBJECT_COLOURS.index(o.colour))
    options = tuple(f"the {o.name}" for o in by_colour)  # fixed colour order: the letter names the colour
    question = "Which object pulses first?"
    videos = []
    for shift in range(4):
        rotated = order[shift:] + order[:shift]  # rotated[i] pulses at pulse_slots[i]
        frames = []
        for t in range(SLOTS):
            pulsing = {rotated[i] for i, s in enumerate(pulse_slots) if s == t}
            frames.append(render([o.resized(PULSE_SIZE) if i in pulsing else o for i, o in enumerate(objs)]))
        answer = options.index(f"the {objs[rotated[0]].name}")
        videos.append(SynthVideo(_stack(frames), question, options, answer, "action_sequence"))
    return videos


def action_antonym(rng: np.random.Generator) -> list[SynthVideo]:
    """An object appears (or grows); the twin disappears (or shrinks)."""
    (shape, colour), (d_shape, d_colour) = _objects(rng, 2)
    q_target, q_other = _pick(rng, range(4), 2)
    qx, qy = _QUADRANTS[q_target]
    target = Sprite(shape, colour, qx + 3, qy + 3, 10)
    distractor = _sprite_in_quadrant(rng, q_other, d_shape, d_colour)
    if rng.integers(2):
        k = int(rng.integers(2, SLOTS - 1))
        frames = [render([distractor] + ([target] if t >= k else [])) for t in range(SLOTS)]
        names = ("appear", "disappear")
    else:
        sizes = [3 + t for t in range(SLOTS)]  # 3 px to 10 px
        frames = [render([distractor, target.resized(s)]) for s in sizes]
        names = ("grow", "shrink")
    forward = _stack(frames)
    options = _canonical(list(names))
    question = f"What does the {colour} {shape} do?"
    return [
        SynthVideo(forward, question, options, options.index(names[0]), "action_antonym"),
        SynthVideo(forward[::-1].copy(), question, options, options.index(names[1]), "action_antonym"),
    ]


def spatial_attribute(rng: np.random.Generator) -> list[SynthVideo]:
    """A static object; ask its colour or its shape (answerable from any single frame)."""
    shape, colour = _pick(rng, SHAPES)[0], _pick(rng, OBJECT_COLOURS)[0]
    # a large object centred in its quadrant: its shape is a fixed pattern of the quadrant's token
    target = _centred_in_quadrant(int(rng.integers(4)), shape, colour)
    slots = _stack([render([target])] * SLOTS)
    if rng.integers(2):
        question, answer, choices = "What colour is the object?", colour, OBJECT_COLOURS
    else:
        question, answer, choices = "What shape is the object?", shape, SHAPES
    # 2 to 4 options, like the temporal tasks, so a model trained on these questions alone learns to
    # answer with one of the listed letters rather than with any letter it has seen
    count = int(rng.integers(2, len(choices) + 1))
    distractors = _pick(rng, [c for c in choices if c != answer], count - 1)
    options = _canonical([answer, *distractors], choices)
    return [SynthVideo(slots, question, options, options.index(answer), SPATIAL_TASK)]


GENERATORS: dict[str, Callable[[np.random.Generator], list[SynthVideo]]] = {
    "action_antonym": action_antonym,
    "action_sequence": action_sequence,
    "moving_direction": moving_direction,
    "object_count": object_count,
    "scene_transition": scene_transition,
    SPATIAL_TASK: spatial_attribute,
}


def generate_group(task: str, rng: np.random.Generator) -> list[SynthVideo]:
    """One twin group of `task`."""
    try:
        return GENERATORS[task](rng)
    except KeyError:
        raise ValueError(f"unknown synthetic task {task!r}; tasks: {', '.join(TASKS)}") from None
