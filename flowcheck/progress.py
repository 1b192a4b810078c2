"""Live progress of the per-sample computations: the sink the runner reports to, and its displays.

The runner calls ``start(label, total)`` before its loop over samples, ``update(done, computed, cached, skipped)``
after every sample and ``finish()`` at the end. A display turns those calls into one line per model x dataset:

    flowcheck: tiny-video-ft: synthetic 12/50 samples, ETA 1:17, elapsed 0:21 (10 computed, 2 cached, 0 skipped)

The ETA counts computed samples only (cached ones are instant): remaining samples x seconds per computed sample,
where only the time of the updates that computed a sample is counted. It is ``--`` until one sample is computed.

Displays: `NullProgress` (silent), `LiveProgress` on any `Lines` target (`StreamLines` for command-line tools on
stderr, `TerminalLines` for pytest's terminal reporter), `FileProgress` for pytest-xdist workers (which cannot write
to the controller's terminal: each writes its state to a small JSON file) and `WorkerBoard`, the controller's view
of those files. `Guarded` makes any sink harmless: its first error becomes one warning and the display goes silent.

A bottom-level module: it imports nothing from flowcheck and nothing from pytest (the terminal reporter and the
capture manager are used through the few methods named below), so every layer may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

PREFIX = "flowcheck: "
SILENT_VERBOSITY = -2  # pytest -q -q and quieter show no progress
INTERVAL = 10.0  # a line-by-line display (not a TTY) writes a new line once this many seconds have passed ...
STEP = 0.1  # ... or this fraction of the samples is done, since its last line
REFRESH = 0.2  # an in-place display (a TTY) rewrites its line at most this often (seconds)

Clock = Callable[[], float]
T = TypeVar("T")


class ProgressSink(Protocol):
    """What the runner reports to, once per (model, dataset) computation."""

    def start(self, label: str, total: int) -> None:
        """A computation of `total` samples named `label` (``<model>: <dataset>``) begins."""

    def update(self, done: int, computed: int, cached: int, skipped: int) -> None:
        """`done` of the samples are through: `computed` computed, `cached` read from the cache, `skipped` left out
        (including those the dataset loader left out before the run, so that the count agrees with the report)."""

    def finish(self) -> None:
        """The computation ended (also after an error: the last `update` says how far it got)."""


class ProgressWarning(UserWarning):
    """The progress display failed; the run goes on without it."""


# ----------------------------------------------------------------------------------------------
# State and its line


def duration(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` from one hour), rounded to the nearest second; ``--`` for an unknown duration.

    >>> duration(59.6), duration(3725), duration(None)
    ('1:00', '1:02:05', '--')
    """
    if seconds is None:
        return "--"
    total = int(max(0.0, seconds) + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class ProgressState:
    """One computation's progress at one moment. Times in seconds; `eta` is None while unknown."""

    label: str
    total: int
    done: int = 0
    computed: int = 0
    cached: int = 0
    skipped: int = 0
    elapsed: float = 0.0
    eta: float | None = None
    finished: bool = False

    def counts(self) -> str:
        """``(10 computed, 2 cached, 0 skipped)``."""
        return f"({self.computed} computed, {self.cached} cached, {self.skipped} skipped)"

    def line(self, prefix: str = PREFIX) -> str:
        """The display line: samples done, ETA and elapsed time first (a narrow terminal cuts the end of the line),
        then the counts; the total time once finished."""
        done = f"{self.done}/{self.total} samples"
        if self.finished:
            return f"{prefix}{self.label} {done} in {duration(self.elapsed)} {self.counts()}"
        return (
            f"{prefix}{self.label} {done}, ETA {duration(self.eta)}, elapsed {duration(self.elapsed)} {self.counts()}"
        )

    def aged(self, seconds: float) -> ProgressState:
        """The same state `seconds` later with no update in between (a running one: elapsed grows, ETA shrinks)."""
        if self.finished or seconds <= 0:
            return self
        eta = None if self.eta is None else max(0.0, self.eta - seconds)
        return replace(self, elapsed=self.elapsed + seconds, eta=eta)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressState:
        """Raises TypeError/ValueError on a malformed entry."""
        eta = data.get("eta")
        return cls(
            label=str(data["label"]),
            total=int(data["total"]),
            done=int(data.get("done", 0)),
            computed=int(data.get("computed", 0)),
            cached=int(data.get("cached", 0)),
            skipped=int(data.get("skipped", 0)),
            elapsed=float(data.get("elapsed", 0.0)),
            eta=None if eta is None else float(eta),
            finished=bool(data.get("finished", False)),
        )


class Tracker:
    """Turns start/update/finish calls into `ProgressState`s, timing them with `clock` (seconds).

    The time between two calls counts as compute time when the later call reports more computed samples; the ETA
    is the remaining samples times the mean compute time per computed sample."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.state: ProgressState | None = None
        self._started = self._last = 0.0
        self._compute_seconds = 0.0

    def start(self, label: str, total: int) -> ProgressState:
        self._started = self._last = self.clock()
        self._compute_seconds = 0.0
        self.state = ProgressState(label, max(0, int(total)))
        return self.state

    def update(self, done: int, computed: int, cached: int, skipped: int) -> ProgressState:
        state = self._current()
        now = self.clock()
        if computed > state.computed:
            self._compute_seconds += now - self._last
        self._last = now
        remaining = max(0, state.total - done)
        if remaining == 0:
            eta = 0.0
        elif computed > 0:
            eta = remaining * self._compute_seconds / computed
        else:
            eta = None
        self.state = replace(
            state,
            done=done,
            computed=computed,
            cached=cached,
            skipped=skipped,
            elapsed=now - self._started,
            eta=eta,
        )
        return self.state

    def finish(self) -> ProgressState:
        state = self._current()
        self.state = replace(state, elapsed=self.clock() - self._started, eta=0.0, finished=True)
        return self.state

    def _current(self) -> ProgressState:
        if self.state is None:
            raise RuntimeError("progress: update() or finish() called before start()")
        return self.state


class Cadence:
    """When a line-by-line display writes: at least `interval` seconds or `step` x total samples after its last
    line (checked at each update)."""

    def __init__(self, interval: float = INTERVAL, step: float = STEP, clock: Clock = time.monotonic) -> None:
        self.interval, self.step, self.clock = interval, step, clock
        self._time = 0.0
        self._done = 0

    def mark(self, done: int) -> None:
        """A line was written now, at `done` samples."""
        self._time, self._done = self.clock(), done

    def due(self, done: int, total: int) -> bool:
        return self.clock() - self._time >= self.interval or done - self._done >= max(1.0, self.step * total)


# ----------------------------------------------------------------------------------------------
# Where lines go


class Lines(Protocol):
    """A place to show lines: `live` rewrites one line in place (TTY only), `line` writes a permanent one (it
    replaces the live line if one is open), `close` ends an open live line."""

    tty: bool

    def live(self, text: str) -> None: ...

    def line(self, text: str) -> None: ...

    def close(self) -> None: ...


def fit(text: str, width: int) -> str:
    """`text` cut to `width` - 1 characters (an in-place line must not wrap), with ``...`` where cut."""
    limit = max(10, width - 1)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StreamLines:
    """Lines on a text stream (stderr for command-line tools). `tty` defaults to the stream's ``isatty()``."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, width: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.width = width
        self._open = 0  # characters of the open live line (0: none)

    def live(self, text: str) -> None:
        text = fit(text, self.width or shutil.get_terminal_size().columns)
        self.stream.write("\r" + text + " " * max(0, self._open - len(text)))
        self.stream.flush()
        self._open = max(1, len(text))

    def line(self, text: str) -> None:
        if self._open:
            self.stream.write("\r" + text + " " * max(0, self._open - len(text)) + "\n")
            self._open = 0
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = 0


class TerminalLines:
    """Lines on pytest's terminal, through its terminal reporter (``config.pluginmanager.get_plugin(
    "terminalreporter")``), with output capturing suspended while writing (the capture manager's
    ``global_and_fixture_disabled()``; results are computed inside a test, whose output pytest captures).

    Our lines start on a fresh line (ending pytest's line of test outcomes if one is open). `restore`, called by the
    plugin before pytest writes a test's outcome, ends an open live line and writes again the prefix pytest's line
    had (``suites/test_x.py `` or, with -v, the test's location) so that outcomes go on where they belong.
    Thread-safe: `lock` is held while writing; the plugin holds it too while pytest writes a test's outcome."""

    def __init__(self, reporter: Any, capture: Any = None) -> None:
        self.reporter = reporter
        self.capture = capture
        self.tty = bool(getattr(reporter, "isatty", False))
        self.lock = threading.RLock()
        self._open = False  # a live line is open
        self._taken = False  # we wrote since pytest last wrote
        self._prefix: tuple[str, Any] | None = None  # pytest's line prefix to write again, and its currentfspath

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        with self.lock:
            disabled = getattr(self.capture, "global_and_fixture_disabled", None)
            with disabled() if disabled is not None else contextlib.nullcontext():
                yield
                self.reporter.flush()

    def _width(self) -> int:
        writer = getattr(self.reporter, "_tw", None)
        return int(getattr(writer, "fullwidth", 0) or shutil.get_terminal_size().columns)

    def _take(self) -> None:
        """Start on an empty line: end pytest's line (a file name and outcomes, dots) if one is open."""
        if self._taken:
            return
        where = getattr(self.reporter, "currentfspath", None)
        if isinstance(where, os.PathLike):  # serial, default verbosity: the file's name starts the line
            start = getattr(self.reporter, "startpath", None) or Path.cwd()
            self._prefix = (os.path.relpath(where, start) + " ", where)
        elif isinstance(where, str):  # -v: the test's location starts the line
            self._prefix = (where, where)
        else:
            self._prefix = None
        self.reporter.ensure_newline()
        writer = getattr(self.reporter, "_tw", None)
        if writer is not None and getattr(writer, "width_of_current_line", 0) > 0:
            self.reporter.write("\n")
        self._taken = True

    def live(self, text: str) -> None:
        with self._writing():
            if not self._open:
                self._take()
            self.reporter.rewrite(fit(text, self._width()), erase=True)
            self._open = True

    def line(self, text: str) -> None:
        with self._writing():
            if self._open:
                self.reporter.rewrite(text, erase=True)
                self.reporter.write("\n")
                self._open = False
            else:
                self._take()
                self.reporter.write(text + "\n")

    def close(self) -> None:
        """End an open live line."""
        with self.lock:
            if self._open:
                with self._writing():
                    self.reporter.write("\n")
                self._open = False

    def restore(self) -> None:
        """Give the terminal back to pytest: end an open live line and write pytest's line prefix again."""
        with self.lock:
            self.close()
            if not self._taken:
                return
            self._taken = False
            if self._prefix is not None:
                text, where = self._prefix
                with self._writing():
                    self.reporter.write(text)
                    self.reporter.currentfspath = where


# ----------------------------------------------------------------------------------------------
# Sinks


class NullProgress:
    """Shows nothing (the default; also pytest with -q -q)."""

    def start(self, label: str, total: int) -> None:
        pass

    def update(self, done: int, computed: int, cached: int, skipped: int) -> None:
        pass

    def finish(self) -> None:
        pass


class LiveProgress:
    """Shows each computation on `lines`: rewritten in place on a TTY (at most every `refresh` seconds), else a line
    at the start, every `interval` seconds or `step` x total samples, and at the end. Ends with a permanent line
    ``<label> <counts> in <time>``."""

    def __init__(
        self,
        lines: Lines,
        *,
        interval: float = INTERVAL,
        step: float = STEP,
        refresh: float = REFRESH,
        clock: Clock = time.monotonic,
        prefix: str = PREFIX,
    ) -> None:
        self.lines, self.prefix = lines, prefix
        self.tracker = Tracker(clock)
        self.cadence = Cadence(refresh, 1.0, clock) if lines.tty else Cadence(interval, step, clock)

    def start(self, label: str, total: int) -> None:
        state = self.tracker.start(label, total)
        self._show(state)

    def update(self, done: int, computed: int, cached: int, skipped: int) -> None:
        state = self.tracker.update(done, computed, cached, skipped)
        if done < state.total and self.cadence.due(done, state.total):  # at the total, `finish` shows the end
            self._show(state)

    def finish(self) -> None:
        state = self.tracker.finish()
        self.lines.line(state.line(self.prefix))

    def _show(self, state: ProgressState) -> None:
        if self.lines.tty:
            self.lines.live(state.line(self.prefix))
        else:
            self.lines.line(state.line(self.prefix))
        self.cadence.mark(state.done)


class Guarded:
    """Forwards to `sink` until it raises: that first error becomes one `ProgressWarning` and the sink is dropped.
    A progress display never breaks a run."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink: ProgressSink | None = sink

    def _call(self, method: str, *args: Any) -> None:
        if self.sink is None:
            return
        try:
            getattr(self.sink, method)(*args)
        except Exception as err:
            self.sink = None
            with contextlib.suppress(Exception):  # e.g. -W error: the warning itself must not break the run
                warnings.warn(
                    f"flowcheck: the progress display failed ({type(err).__name__}: {err}); the run goes on without it",
                    ProgressWarning,
                    stacklevel=3,
                )

    def start(self, label: str, total: int) -> None:
        self._call("start", label, total)

    def update(self, done: int, computed: int, cached: int, skipped: int) -> None:
        self._call("update", done, computed, cached, skipped)

    def finish(self) -> None:
        self._call("finish")


def track(
    items: Sequence[T], sink: ProgressSink | None, label: str, counts: Callable[[], tuple[int, int, int]]
) -> Iterator[T]:
    """Iterate over `items`, telling `sink` (None: nobody) ``start(label, len(items))`` first, ``update(done,
    *counts())`` once the loop body is through with each item (also after a ``continue``) and ``finish()`` at the
    end: when the items run out, or when the loop stops early (break, error; CPython closes the generator then).
    `counts` returns (computed, cached, skipped) at the time of the update."""
    if sink is None:
        yield from items
        return
    sink.start(label, len(items))
    try:
        for done, item in enumerate(items, 1):
            yield item
            sink.update(done, *counts())
    finally:
        sink.finish()


def stderr_progress(stream: TextIO | None = None) -> ProgressSink:
    """The display of command-line tools: stderr, in place on a TTY, a line every ~10 s or 10% otherwise."""
    return Guarded(LiveProgress(StreamLines(stream)))


# ----------------------------------------------------------------------------------------------
# pytest-xdist: workers write files, the controller shows them


class FileProgress:
    """A worker's display: its state, rewritten atomically (temporary file + rename) in the JSON file `path`.

    File content: ``{"worker": id, "written": <time.time()>, "current": <state or null>, "finished": [<state>,
    ...]}``, every state a `ProgressState.to_dict()`; finished computations are kept so that a reader polling
    now and then sees each one's final line. Written at most every `min_interval` seconds, always at start and end.
    """

    def __init__(
        self,
        path: Path,
        worker: str,
        *,
        min_interval: float = 0.5,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.path, self.worker, self.min_interval, self.wall = Path(path), worker, min_interval, wall
        self.tracker = Tracker(clock)
        self.finished: list[ProgressState] = []
        self._written = float("-inf")

    def start(self, label: str, total: int) -> None:
        self.tracker.start(label, total)
        self._write()

    def update(self, done: int, computed: int, cached: int, skipped: int) -> None:
        self.tracker.update(done, computed, cached, skipped)
        if self.tracker.clock() - self._written >= self.min_interval:
            self._write()

    def finish(self) -> None:
        self.finished.append(self.tracker.finish())
        self.tracker.state = None
        self._write()

    def _write(self) -> None:
        current = self.tracker.state
        data = {
            "worker": self.worker,
            "written": self.wall(),
            "current": current.to_dict() if current is not None else None,
            "finished": [s.to_dict() for s in self.finished],
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self.path)
        self._written = self.tracker.clock()


@dataclass
class _Seen:
    """What the board has shown of one worker."""

    finished: int = 0
    label: str | None = None
    cadence: Cadence | None = None


class WorkerBoard:
    """The controller's view of the workers' `FileProgress` files in `folder` (``<worker>.json``).

    Each `poll` writes every newly finished computation's final line (``[gw0] <label> ... in 1:30``) and the running
    ones: on a TTY one aggregated live line (all workers' samples summed, the longest elapsed time, the largest
    known ETA, then each worker's label and count), else one line per worker at its start, every `interval`
    seconds or `step` x total, as `LiveProgress` does. `run` polls from a daemon thread until `stop`."""

    def __init__(
        self,
        folder: Path,
        lines: Lines,
        *,
        interval: float = INTERVAL,
        step: float = STEP,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        prefix: str = PREFIX,
    ) -> None:
        self.folder, self.lines, self.prefix = Path(folder), lines, prefix
        self.interval, self.step, self.clock, self.wall = interval, step, clock, wall
        self.seen: dict[str, _Seen] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def read(self) -> dict[str, tuple[list[ProgressState], ProgressState | None]]:
        """Per worker: its finished states and its running one (aged to now). Unreadable files are left for the
        next poll (a file is only ever replaced whole, so this is rare)."""
        out = {}
        now = self.wall()
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                finished = [ProgressState.from_dict(s) for s in data.get("finished", [])]
                current = ProgressState.from_dict(data["current"]) if data.get("current") else None
                worker = str(data.get("worker") or path.stem)
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                continue
            if current is not None:
                current = current.aged(now - float(data.get("written", now)))
            out[worker] = (finished, current)
        return out

    def poll(self) -> None:
        running = {}
        for worker, (finished, current) in self.read().items():
            seen = self.seen.setdefault(worker, _Seen())
            for state in finished[seen.finished :]:
                self.lines.line(state.line(f"{self.prefix}[{worker}] "))
            seen.finished = max(seen.finished, len(finished))
            if current is not None:
                running[worker] = current
        if self.lines.tty:
            if running:
                self.lines.live(self.aggregate(running))
            return
        for worker, state in running.items():
            seen = self.seen[worker]
            if seen.label != state.label or seen.cadence is None:
                seen.label, seen.cadence = state.label, Cadence(self.interval, self.step, self.clock)
            elif state.done >= state.total or not seen.cadence.due(state.done, state.total):
                continue
            self.lines.line(state.line(f"{self.prefix}[{worker}] "))
            seen.cadence.mark(state.done)

    def aggregate(self, running: dict[str, ProgressState]) -> str:
        """One line for every running computation: summed counts, longest elapsed, largest known ETA, then
        ``| gw0 <label> done/total`` per worker."""
        states = list(running.values())
        etas = [s.eta for s in states if s.eta is not None]
        total = ProgressState(
            label="",
            total=sum(s.total for s in states),
            done=sum(s.done for s in states),
            computed=sum(s.computed for s in states),
            cached=sum(s.cached for s in states),
            skipped=sum(s.skipped for s in states),
        )
        parts = [
            f"{self.prefix}{len(states)} running: {total.done}/{total.total} samples, "
            f"ETA {duration(max(etas) if etas else None)}, elapsed {duration(max(s.elapsed for s in states))} "
            f"{total.counts()}"
        ]
        parts += [f"{worker} {s.label} {s.done}/{s.total}" for worker, s in running.items()]
        return " | ".join(parts)

    def run(self, period: float = 1.0) -> None:
        """Poll every `period` seconds from a daemon thread (until `stop`)."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(period):
                self._safe_poll()

        self._thread = threading.Thread(target=loop, name="flowcheck-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, show what is left (final lines) and end the live line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._safe_poll()
        if not self._failed:
            with contextlib.suppress(Exception):
                self.lines.close()

    def _safe_poll(self) -> None:
        if self._failed:
            return
        try:
            self.poll()
        except Exception as err:
            self._failed = True
            with contextlib.suppress(Exception):
                warnings.warn(
                    f"flowcheck: the workers' progress display failed ({type(err).__name__}: {err}); the run goes "
                    "on without it",
                    ProgressWarning,
                    stacklevel=2,
                )
