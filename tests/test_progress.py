"""Live progress (flowcheck.progress): the line's numbers by hand, TTY and line-by-line displays, xdist workers'
files and the controller's board, a broken display that never breaks a run, and the main job's terminal with
pytester (serial, -q -q, -n 2)."""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from pathlib import Path

import pytest

from flowcheck import bundled
from flowcheck.data.synth import write_benchmark  # imported before pytester's tests (it snapshots sys.modules)
from flowcheck.progress import (
    FileProgress,
    Guarded,
    LiveProgress,
    NullProgress,
    ProgressState,
    ProgressWarning,
    StreamLines,
    TerminalLines,
    Tracker,
    WorkerBoard,
    duration,
    fit,
    track,
)

pytest_plugins = ["pytester"]


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recording:
    """A sink that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, label: str, total: int) -> None:
        self.calls.append(("start", label, total))

    def update(self, done: int, computed: int, cached: int, skipped: int) -> None:
        self.calls.append(("update", done, computed, cached, skipped))

    def finish(self) -> None:
        self.calls.append(("finish",))


class Broken(Recording):
    def update(self, done: int, computed: int, cached: int, skipped: int) -> None:
        raise OSError("terminal gone")


class RecordingLines:
    """A `Lines` target that records what it is asked to show."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.shown: list[tuple[str, str]] = []

    def live(self, text: str) -> None:
        self.shown.append(("live", text))

    def line(self, text: str) -> None:
        self.shown.append(("line", text))

    def close(self) -> None:
        self.shown.append(("close", ""))


# ----------------------------------------------------------------------------------------------
# The line and its numbers


def test_durations_round_to_the_second_and_show_hours_from_one_hour():
    assert [duration(s) for s in (0, 0.49, 59.4, 59.6, 61, 3599.4, 3725, None, -3)] == [
        "0:00",
        "0:00",
        "0:59",
        "1:00",
        "1:01",
        "59:59",
        "1:02:05",
        "--",
        "0:00",
    ]


def test_eta_counts_only_the_time_of_computed_samples():
    clock = FakeClock()
    tracker = Tracker(clock)
    tracker.start("tiny: synthetic", 10)
    assert tracker.state.line() == (
        "flowcheck: tiny: synthetic 0/10 samples, ETA --, elapsed 0:00 (0 computed, 0 cached, 0 skipped)"
    )
    clock.now = 3.0
    tracker.update(1, 1, 0, 0)  # 3 s computing one sample
    clock.now = 3.5
    tracker.update(2, 1, 1, 0)  # a cached sample: its 0.5 s does not count
    clock.now = 9.5
    state = tracker.update(3, 2, 1, 0)  # 6 s computing the second: 9 s for 2 computed samples
    # 7 samples left x 9 s / 2 computed = 31.5 s -> 0:32; elapsed 9.5 s -> 0:10
    assert state.eta == pytest.approx(31.5)
    assert state.line() == (
        "flowcheck: tiny: synthetic 3/10 samples, ETA 0:32, elapsed 0:10 (2 computed, 1 cached, 0 skipped)"
    )
    clock.now = 70.0
    assert (
        tracker.finish().line() == "flowcheck: tiny: synthetic 3/10 samples in 1:10 (2 computed, 1 cached, 0 skipped)"
    )


def test_eta_is_unknown_while_everything_comes_from_the_cache_and_zero_when_all_are_done():
    clock = FakeClock()
    tracker = Tracker(clock)
    tracker.start("m: d", 4)
    clock.now = 1.0
    assert tracker.update(2, 0, 1, 1).eta is None  # one cached, one skipped (e.g. at load time): no rate yet
    clock.now = 5.0
    assert tracker.update(4, 1, 2, 1).eta == 0.0
    with pytest.raises(RuntimeError, match="before start"):
        Tracker().update(1, 1, 0, 0)


def test_a_state_ages_between_updates_elapsed_grows_and_eta_shrinks_to_zero():
    state = ProgressState("m: d", 10, done=4, computed=4, elapsed=20.0, eta=30.0)
    assert (state.aged(12).elapsed, state.aged(12).eta) == (32.0, 18.0)
    assert state.aged(45).eta == 0.0
    finished = ProgressState("m: d", 10, done=10, elapsed=20.0, finished=True)
    assert finished.aged(100) == finished
    assert ProgressState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


# ----------------------------------------------------------------------------------------------
# Displays


def test_a_stream_that_is_not_a_tty_gets_a_line_at_start_every_10_percent_or_10_seconds_and_at_the_end():
    clock, out = FakeClock(), io.StringIO()
    sink = LiveProgress(StreamLines(out, tty=False), clock=clock)
    sink.start("m: d", 50)  # 10% of 50 = 5 samples
    for done in range(1, 5):
        clock.now += 1.0
        sink.update(done, done, 0, 0)  # 4 samples in 4 s: no line
    clock.now += 1.0
    sink.update(5, 5, 0, 0)  # 10%: a line
    clock.now += 9.0
    sink.update(6, 6, 0, 0)  # 9 s and 1 sample since: no line
    clock.now += 1.5
    sink.update(7, 7, 0, 0)  # 10.5 s since: a line
    for done in range(8, 51):
        sink.update(done, 7, done - 7, 0)  # the rest from the cache, instantly: lines at 12 and 17 ... 47
    sink.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "flowcheck: m: d 0/50 samples, ETA --, elapsed 0:00 (0 computed, 0 cached, 0 skipped)"
    # 5 computed in 5 s: 1 s each; 45 left -> 0:45
    assert lines[1] == "flowcheck: m: d 5/50 samples, ETA 0:45, elapsed 0:05 (5 computed, 0 cached, 0 skipped)"
    # 7 computed in 15.5 s; 43 left x 15.5/7 = 95.2 s -> 1:35
    assert lines[2] == "flowcheck: m: d 7/50 samples, ETA 1:35, elapsed 0:16 (7 computed, 0 cached, 0 skipped)"
    assert [line.split()[3] for line in lines[3:-1]] == [
        "12/50",
        "17/50",
        "22/50",
        "27/50",
        "32/50",
        "37/50",
        "42/50",
        "47/50",
    ]
    assert lines[-1] == "flowcheck: m: d 50/50 samples in 0:16 (7 computed, 43 cached, 0 skipped)"
    assert "\r" not in out.getvalue()


def test_a_tty_gets_one_line_rewritten_in_place_and_cut_to_the_terminal_width():
    clock, out = FakeClock(), io.StringIO()
    sink = LiveProgress(StreamLines(out, tty=True, width=200), clock=clock)
    sink.start("m: d", 3)
    clock.now = 0.1
    sink.update(1, 1, 0, 0)  # within 0.2 s of the last rewrite: not shown
    clock.now = 2.0
    sink.update(2, 2, 0, 0)
    clock.now = 3.0
    sink.finish()
    first = "flowcheck: m: d 0/3 samples, ETA --, elapsed 0:00 (0 computed, 0 cached, 0 skipped)"
    second = "flowcheck: m: d 2/3 samples, ETA 0:01, elapsed 0:02 (2 computed, 0 cached, 0 skipped)"
    final = "flowcheck: m: d 2/3 samples in 0:03 (2 computed, 0 cached, 0 skipped)"
    pad = " " * (len(second) - len(final))
    assert out.getvalue() == "\r" + first + "\r" + second + "\r" + final + pad + "\n"
    assert fit("x" * 100, 40) == "x" * 36 + "..." and fit("short", 40) == "short"
    narrow = io.StringIO()
    StreamLines(narrow, tty=True, width=40).live("y" * 100)
    assert narrow.getvalue() == "\r" + "y" * 36 + "..."


def test_a_broken_display_warns_once_and_the_run_goes_on():
    broken = Broken()
    sink = Guarded(broken)
    sink.start("m: d", 2)
    with pytest.warns(ProgressWarning, match=r"progress display failed \(OSError: terminal gone\)"):
        sink.update(1, 1, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, and the sink is not called again
        sink.update(2, 2, 0, 0)
        sink.finish()
    assert broken.calls == [("start", "m: d", 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # -W error: the warning cannot be raised, the run still goes on
        Guarded(Broken()).update(1, 1, 0, 0)


def test_track_updates_after_each_item_also_after_continue_and_finishes_on_an_error():
    sink, counts = Recording(), {"computed": 0, "skipped": 0}
    for item in track(["a", "b", "c"], sink, "m: d", lambda: (counts["computed"], 0, counts["skipped"])):
        if item == "b":
            counts["skipped"] += 1
            continue
        counts["computed"] += 1
    assert sink.calls == [
        ("start", "m: d", 3),
        ("update", 1, 1, 0, 0),
        ("update", 2, 1, 0, 1),
        ("update", 3, 2, 0, 1),
        ("finish",),
    ]
    sink = Recording()

    def stops_at_b() -> None:
        for item in track(["a", "b", "c"], sink, "m: d", lambda: (0, 0, 0)):
            if item == "b":
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stops_at_b()
    assert sink.calls == [("start", "m: d", 3), ("update", 1, 0, 0, 0), ("finish",)]
    assert list(track([1, 2], None, "m: d", lambda: (0, 0, 0))) == [1, 2]
    NullProgress().start("m: d", 1)


class FakeWriter:
    def __init__(self) -> None:
        self.current = ""

    @property
    def width_of_current_line(self) -> int:
        return len(self.current)


class FakeReporter:
    """The few terminal-reporter methods TerminalLines uses, writing to a string."""

    def __init__(self, tty: bool, startpath: Path) -> None:
        self.isatty = tty
        self.startpath = startpath
        self.currentfspath = None
        self._tw = FakeWriter()
        self._tw.fullwidth = 80
        self.out = ""

    def write(self, text: str) -> None:
        self.out += text
        self._tw.current = (self._tw.current + text).rsplit("\n", 1)[-1]

    def ensure_newline(self) -> None:
        if self.currentfspath:
            self.write("\n")
            self.currentfspath = None

    def rewrite(self, line: str, erase: bool = False) -> None:
        self.write("\r" + line + (" " * (self._tw.fullwidth - len(line) - 1) if erase else ""))

    def flush(self) -> None:
        pass


class FakeCapture:
    def __init__(self, reporter: FakeReporter) -> None:
        self.reporter, self.disabled = reporter, 0

    def global_and_fixture_disabled(self):
        import contextlib

        @contextlib.contextmanager
        def context():
            self.disabled += 1
            self.reporter.write("<")
            yield
            self.reporter.write(">")

        return context()


def test_terminal_lines_start_on_a_fresh_line_outside_capture_and_give_pytest_its_line_back(tmp_path):
    reporter = FakeReporter(tty=False, startpath=tmp_path)
    reporter.write("suites/test_x.py ")
    reporter.currentfspath = tmp_path / "suites" / "test_x.py"
    lines = TerminalLines(reporter)
    lines.line("flowcheck: one")
    lines.line("flowcheck: two")
    lines.restore()  # before pytest writes the test's outcome
    reporter.write("s")
    assert reporter.out == "suites/test_x.py \nflowcheck: one\nflowcheck: two\nsuites/test_x.py s"
    assert reporter.currentfspath == tmp_path / "suites" / "test_x.py"

    dots = FakeReporter(tty=True, startpath=tmp_path)  # xdist: a line of dots, no file name
    dots.write("....")
    capture = FakeCapture(dots)
    lines = TerminalLines(dots, capture)
    lines.live("flowcheck: live")
    lines.restore()
    dots.write(".")
    fill = " " * (80 - len("flowcheck: live") - 1)
    assert dots.out == "....<\n\rflowcheck: live" + fill + "><\n>."
    assert capture.disabled == 2


# ----------------------------------------------------------------------------------------------
# xdist: worker files and the controller's board


def test_the_board_shows_each_workers_lines_and_every_final_line_once(tmp_path):
    clock, wall = FakeClock(), FakeClock(1000.0)
    gw0 = FileProgress(tmp_path / "gw0.json", "gw0", clock=clock, wall=wall)
    gw1 = FileProgress(tmp_path / "gw1.json", "gw1", clock=clock, wall=wall)
    shown = RecordingLines(tty=False)
    board = WorkerBoard(tmp_path, shown, clock=clock, wall=wall)
    gw0.start("big: synthetic", 20)
    gw1.start("small: synthetic", 2)
    clock.now, wall.now = 4.0, 1004.0
    gw0.update(1, 1, 0, 0)  # 4 s per sample, 19 left: ETA 76 s
    gw1.update(1, 0, 1, 0)
    gw1.update(2, 0, 2, 0)
    gw1.finish()  # finished between two polls: its final line still comes, once
    gw1.start("small: tvbench", 5)
    clock.now, wall.now = 6.0, 1006.0  # 2 s after gw0 wrote: elapsed 6 s, ETA 74 s
    board.poll()
    assert shown.shown == [
        ("line", "flowcheck: [gw1] small: synthetic 2/2 samples in 0:04 (0 computed, 2 cached, 0 skipped)"),
        (
            "line",
            "flowcheck: [gw0] big: synthetic 1/20 samples, ETA 1:14, elapsed 0:06 (1 computed, 0 cached, 0 skipped)",
        ),
        ("line", "flowcheck: [gw1] small: tvbench 0/5 samples, ETA --, elapsed 0:02 (0 computed, 0 cached, 0 skipped)"),
    ]
    shown.shown.clear()
    board.poll()  # nothing new, too early for another line
    assert shown.shown == []
    clock.now, wall.now = 16.5, 1016.5  # 10.5 s after the board's line on gw0: a new one
    board.poll()
    assert [text.split()[1] for _, text in shown.shown] == ["[gw0]", "[gw1]"]
    (tmp_path / "gw2.json").write_text("{not json")  # a partly written or foreign file is ignored
    board.poll()


def test_on_a_tty_the_board_shows_one_aggregated_live_line(tmp_path):
    clock, wall = FakeClock(), FakeClock(50.0)
    shown = RecordingLines(tty=True)
    board = WorkerBoard(tmp_path, shown, clock=clock, wall=wall)
    for worker, total, computed, seconds in (("gw0", 40, 10, 30.0), ("gw1", 40, 8, 20.0)):
        state = ProgressState(
            f"{worker}-model: synthetic", total, computed, computed, elapsed=seconds, eta=(total - computed) * 3.0
        )
        data = {"worker": worker, "written": 50.0, "current": state.to_dict(), "finished": []}
        (tmp_path / f"{worker}.json").write_text(json.dumps(data))
    board.poll()
    # 18 of 80 done; longest elapsed 0:30; ETAs 90 s and 96 s -> the larger, 1:36
    assert shown.shown == [
        (
            "live",
            "flowcheck: 2 running: 18/80 samples, ETA 1:36, elapsed 0:30 (18 computed, 0 cached, 0 skipped)"
            " | gw0 gw0-model: synthetic 10/40 | gw1 gw1-model: synthetic 8/40",
        )
    ]
    board.stop()
    assert shown.shown[-1] == ("close", "")


# ----------------------------------------------------------------------------------------------
# The runner and the main job's terminal


def test_the_runner_reports_every_sample_and_a_broken_display_changes_nothing(tmp_path):
    from tiny_checkpoint import save_tiny_checkpoint

    import flowcheck
    from flowcheck.analyses.runner import AnalysisPlan, run_analyses
    from flowcheck.cache import ResultCache
    from flowcheck.data.folder import load_tvbench_layout
    from flowcheck.models.handle import ModelHandle

    adapter = flowcheck.load(str(save_tiny_checkpoint(tmp_path / "ckpt", layers=2)))
    write_benchmark(tmp_path / "bench", seed=1, per_task=2, tasks=["moving_direction"], progress=False)
    samples, _ = load_tvbench_layout(tmp_path / "bench", dataset="synthetic")
    plan = AnalysisPlan(analyses=("sweep",), settings={"sweep": {"conditions": ("cross_frame",)}})
    sink = Recording()
    first = run_analyses(adapter, samples, plan, ResultCache(tmp_path / "c"), dataset="synthetic", progress=sink)
    assert sink.calls == [
        ("start", f"{ModelHandle.from_adapter(adapter).name}: synthetic", 2),
        ("update", 1, 1, 0, 0),
        ("update", 2, 2, 0, 0),
        ("finish",),
    ]
    sink = Recording()
    run_analyses(
        adapter, samples, plan, ResultCache(tmp_path / "c"), dataset="synthetic", progress=sink, skipped_before=3
    )
    assert sink.calls[1:] == [("update", 1, 0, 1, 3), ("update", 2, 0, 2, 3), ("finish",)]
    with pytest.warns(ProgressWarning):
        again = run_analyses(
            adapter, samples, plan, ResultCache(tmp_path / "d"), dataset="synthetic", progress=Guarded(Broken())
        )
    p_new = [
        [r.p_new for r in sweep.records] for results in (again, first) for sweep in results.results["sweep"].values()
    ]
    assert again.computed == 2 and p_new[:2] == p_new[2:]


BUNDLED = bundled.model_dir("tiny-video-ft")
SUITES = Path(__file__).resolve().parents[1] / "suites"


@pytest.fixture
def main_job(pytester, tmp_path_factory):
    """`pytest <suite>` on the bundled trained model and 2 synthetic samples, in a pytester subprocess."""
    source = Path(os.environ.get("FLOWCHECK_TEST_MODEL", BUNDLED))
    assert (source / "config.json").exists(), f"no trained tiny model at {source} (the package data is incomplete)"
    bench = tmp_path_factory.mktemp("bench")
    write_benchmark(bench, seed=2, per_task=2, tasks=["moving_direction"], progress=False)
    for path in SUITES.glob("*.py"):
        shutil.copy(path, pytester.path / path.name)

    def run(*args: str, cache: str = "cache"):
        return pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            "--flow-model",
            f"tiny-model={source}",
            "--flow-data",
            f"synthetic={bench}",
            "--flow-cache",
            str(pytester.path / cache),
            "--flow-report-dir",
            str(pytester.path / "reports"),
            "--flow-no-report",
            "test_answer_readiness.py",
            *args,
        )

    return run


def test_the_main_job_shows_progress_in_the_terminal_and_none_with_q_q(main_job):
    result = main_job()
    result.stdout.fnmatch_lines(
        [
            "test_answer_readiness.py ",
            "flowcheck: tiny-model: synthetic 0/2 samples, ETA --, elapsed 0:00 (0 computed, 0 cached, 0 skipped)",
            "flowcheck: tiny-model: synthetic 2/2 samples in * (2 computed, 0 cached, 0 skipped)",
            "test_answer_readiness.py *",  # pytest's line of outcomes goes on under its file name
        ]
    )
    assert "ProgressWarning" not in result.stdout.str()
    quiet = main_job("-q", "-q")  # from the cache: it would show "2/2 samples (0 computed, 2 cached, ...)"
    assert quiet.ret == result.ret
    assert "flowcheck: tiny-model" not in quiet.stdout.str()


def test_under_xdist_the_controller_shows_the_workers_progress(main_job):
    result = main_job("-n", "2")
    result.stdout.fnmatch_lines(
        ["flowcheck: [[]gw?[]] tiny-model: synthetic 2/2 samples in * (2 computed, 0 cached, 0 skipped)"]
    )
    assert "ProgressWarning" not in result.stdout.str()
