"""results.json is typed; a report folder appears complete or not at all; no table cell shows nan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowcheck.analyses.accuracy import AccuracyAnalysis, AccuracyUnderKnockout
from flowcheck.analyses.curves import Curve
from flowcheck.analyses.summary import TaskSummary
from flowcheck.analyses.sweep import Curves
from flowcheck.record import RunRecord, SchemaError
from flowcheck.report import figures
from flowcheck.report.tables import markdown_table
from flowcheck.report.writer import new_run_dir, render

METADATA = {
    "date": "2026-11-30 12:00:00",
    "duration_s": 1.5,
    "git_commit": "abc1234",
    "versions": {"flowcheck": "0.1.0"},
    "device": "cpu",
    "dtype": "float32",
    "seed": 0,
    "models": [{"name": "m", "source": "/ckpt/m", "fingerprint": "f00d", "layers": 8}],
    "datasets": [{"name": "d", "root": "/data", "loaded": 20, "skipped": 1}],
    "registry": ["flowcheck/specs/claims.toml"],
}
CLAIM = {
    "nodeid": "suites/test_x.py::test_x[m-t]",
    "claim": "cross_frame_early",
    "model": "m",
    "dataset": "d",
    "task": "t",
    "outcome": "passed",
    "evaluable": True,
    "passed": True,
    "measured": {"minimum_pct": -30.0, "at_layer": 4},
    "thresholds": {"min_change_pct": -5.0},
    "message": "holds",
}


def data(claims=None, summaries=None) -> RunRecord:
    curve = Curve("cross_frame", list(range(8)), [0, -1, -2, -30, -3, 0, 0, 0], [0] * 8, [0] * 8, 20)
    per_task = {"t": TaskSummary("m", "d", "t", 8, 20, 20, {"sweep": Curves({"cross_frame": curve})})}
    per_task["all"] = TaskSummary("m", "d", "all", 8, 20, 20)
    skipped = [{"dataset": "d", "sample_id": "d/t/x", "file": "x.mp4", "reason": "corrupt", "models": "all models"}]
    return RunRecord(
        dict(METADATA),
        claims or [dict(CLAIM)],
        summaries or {("m", "d"): per_task},
        skipped,
        findings={"C1": "cross-frame interactions first"},
        claim_specs={"cross_frame_early": {"finding": "C1", "title": "Cross-frame knockout hurts early"}},
    )


def test_results_json_round_trips_with_json_booleans(tmp_path: Path):
    render(data(), tmp_path / "run")
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["claims"][0]["passed"] is True and record["schema_version"] == 4
    assert record["layer_index_base"] == {"claims": 1, "summaries": 0}
    again = RunRecord.from_json(record)
    assert again.claims[0]["measured"]["at_layer"] == 4 and again.skipped[0]["reason"] == "corrupt"
    curve = again.summaries[("m", "d")]["t"].get("sweep").curves["cross_frame"]
    assert curve.argmin == 3 and curve.minimum == -30  # the summary is read back as the sweep's own type


@pytest.mark.parametrize(("field", "value"), [("passed", "True"), ("outcome", "sort of"), ("measured", {"x": [1, 2]})])
def test_a_malformed_value_is_refused_before_anything_is_written(tmp_path: Path, field, value):
    bad = {**CLAIM, field: value}
    with pytest.raises(SchemaError):
        render(data(claims=[bad]), tmp_path / "run")
    assert not list(tmp_path.iterdir())


def test_an_old_or_foreign_results_json_gets_a_clear_error():
    with pytest.raises(SchemaError, match=r"schema version 'none'.*re-run"):
        RunRecord.from_json({"metadata": {}, "claims": []})


def test_an_interrupted_render_leaves_no_report_folder(tmp_path: Path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "plot_curves", broken)
    run_dir = new_run_dir(tmp_path / "reports")
    with pytest.raises(KeyboardInterrupt):
        render(data(), run_dir)
    assert not run_dir.exists() and not list((tmp_path / "reports").iterdir())


def test_table2_never_shows_nan():
    zero = AccuracyUnderKnockout("cross_frame", [0, 1, 2, 3], 12, 0.0, 0.0, 0.0)
    summaries = {("m", "d"): {"t": TaskSummary("m", "d", "t", 8, 12, 0, {"accuracy": zero})}}
    record = RunRecord(dict(METADATA), [], summaries, [])
    (table,) = AccuracyAnalysis.report(record.report_inputs()).tables
    text = markdown_table(table)
    assert "nan" not in text and "n/a (0 of 12 correct)" in text


BLOCKER = """
import sys
from importlib.abc import MetaPathFinder


class Blocked(MetaPathFinder):
    # the report re-renders from results.json alone: no session, runner, model handle or loader may load
    names = ("flowcheck.session", "flowcheck.analyses.runner", "flowcheck.models.handle", "flowcheck.data.frames")

    def find_spec(self, name, path=None, target=None):
        if name in self.names:
            raise ImportError(f"{name} is blocked: the report must not need it")


sys.meta_path.insert(0, Blocked())
from flowcheck.cli import main

sys.exit(main(["report", sys.argv[1], "--out", sys.argv[2]]))
"""


def test_flowcheck_report_rerenders_from_the_record_alone(tmp_path: Path):
    """`flowcheck report results.json` on a machine with no model and no cache: nothing but the record is read
    (the session, the runner, model handles and the frame loader cannot even be imported in that process)."""
    import subprocess
    import sys

    render(data(), tmp_path / "run")
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKER)
    out = tmp_path / "again"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run" / "results.json"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = (tmp_path / "run" / "REPORT.md").read_text(), (out / "REPORT.md").read_text()
    assert first == second and (out / "fig2-cross-frame-m-d.png").exists()
    assert not (tmp_path / ".flowcheck-cache").exists()


def test_an_analysis_not_registered_where_the_report_is_rendered_is_shown_not_dropped(tmp_path: Path):
    """A run that used a plugin's analysis, re-rendered where that module is not imported: its summaries are in
    the record, so its numbers appear under its recorded title (they used to vanish without a word)."""
    record = data()
    record.summaries[("m", "d")]["t"].analyses["plugin_metric"] = {"mean": 0.25, "samples": 20}
    record.analysis_titles = {"plugin_metric": "Plugin metric"}
    text = render(RunRecord.from_json(record.to_json()), tmp_path / "run")
    assert "## Plugin metric (analysis 'plugin_metric' not registered here)" in text
    row = next(line for line in text.splitlines() if line.startswith("| m "))
    assert "0.25" in row and "20" in row


def test_rerendering_inside_the_run_folder_writes_there(tmp_path: Path, monkeypatch):
    """`cd <run> && flowcheck report results.json` (out = ".") crashed: "PosixPath('.') has an empty name"."""
    render(data(), tmp_path / "run")
    monkeypatch.chdir(tmp_path / "run")
    render(RunRecord.from_json(json.loads(Path("results.json").read_text())), Path("."))
    assert (tmp_path / "run" / "REPORT.md").exists() and not list(tmp_path.glob(".*tmp*"))
