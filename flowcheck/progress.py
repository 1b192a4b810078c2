"""Progress of long computations: the sink interface the analyses runner reports to."""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    """Receives a run's progress: `start` once, `update` after every sample, `finish` at the end."""

    def start(self, label: str, total: int) -> None: ...

    def update(self, done: int, computed: int, cached: int, skipped: int) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """Shows nothing."""

    def start(self, label: str, total: int) -> None:
        pass

    def update(self, done: int, computed: int, cached: int, skipped: int) -> None:
        pass

    def finish(self) -> None:
        pass
