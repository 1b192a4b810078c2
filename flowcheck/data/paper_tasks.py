"""The paper's temporal tasks: the one place their names are written.

The paper tests its temporal findings on five TVBench tasks; the synthetic benchmark has one
miniature of each, under the same name (plus a spatial control task, ``spatial_attribute``).
"""

from __future__ import annotations

TEMPORAL_TASKS: tuple[str, ...] = (
    "action_antonym",
    "action_sequence",
    "moving_direction",
    "object_count",
    "scene_transition",
)

__all__ = ["TEMPORAL_TASKS"]
