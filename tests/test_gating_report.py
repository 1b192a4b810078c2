"""The gate in the run record and the report: results.json keeps the gate and the provenance (schema version 4), an
older results.json is refused as before, REPORT.md and $GITHUB_STEP_SUMMARY show the gate's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_gating import snapshot, task_record
from test_report_record import data

from flowcheck.gating import GateConfig, gate
from flowcheck.record import RunRecord, SchemaError
from flowcheck.report.writer import render, write_report

PROVENANCE = {"options": {"dtype": {"value": "bfloat16", "source": "command line"}}, "git_commit": "abc"}


def failing_gate() -> dict:
    b = task_record([True] * 40)
    n = task_record([True] * 20 + [False] * 20)  # -50 points, 20 discordant pairs: p ~ 2e-6
    config = GateConfig(tolerances={"accuracy": {"abs": 2.0}})
    return gate(snapshot({"t": n}), snapshot({"t": b}), config, model="new-ckpt", baseline_name="base").to_dict()


def test_results_json_keeps_the_gate_and_the_provenance(tmp_path: Path):
    record = data()
    record.metadata = {**record.metadata, "provenance": PROVENANCE}
    record.gates = [failing_gate()]
    render(record, tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    assert stored["schema_version"] == 4 and stored["metadata"]["provenance"] == PROVENANCE
    again = RunRecord.from_json(stored)
    assert again.gates[0]["passed"] is False and again.gates[0]["rows"][0]["verdict"] == "FAIL"
    report = (tmp_path / "run" / "REPORT.md").read_text()
    assert "## Gate: new-ckpt against baseline base" in report
    assert "| metric | baseline | new | difference | CI | p-value | tolerance | verdict |" in report
    assert "| `bench/t/base_accuracy` | 100.0% | 50.0% | -50.00 pts |" in report and "**FAIL**" in report
    assert "dtype=bfloat16 (command line)" in report  # the options not left at their defaults


def test_a_version_3_results_json_is_refused_with_both_versions(tmp_path: Path):
    render(data(), tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    stored["schema_version"] = 3
    with pytest.raises(SchemaError, match=r"schema version 3.*reads version 4"):
        RunRecord.from_json(stored)


def test_the_gate_table_goes_to_the_github_step_summary(tmp_path: Path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    record = data()
    record.gates = [failing_gate()]
    write_report(record, tmp_path / "reports")
    text = summary.read_text()
    assert "## Gate: new-ckpt against baseline base" in text and "-50.00 pts" in text
