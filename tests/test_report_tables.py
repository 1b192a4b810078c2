"""The claims matrix that opens REPORT.md and the per-claim details: counts, symbols, values shown once."""

from __future__ import annotations

import re

import pytest

from flowcheck.claims import RegistryError, load_registry
from flowcheck.record.schema import OUTCOMES, ClaimEntry
from flowcheck.report.tables import (
    LEGEND,
    OUTCOME_SYMBOL,
    claim_details,
    claims_matrix,
    counts_cell,
    outcome_counts,
    xfail_note,
)

FINDINGS = {"C1": "Cross-frame first", "C2": "Through the question"}
FINDING_OF = {"early": "C1", "drop": "C1", "route": "C2"}
TITLES = {"early": "Minimum <= -5% in the first half", "drop": "Accuracy drops", "route": "Video -/-> Question hurts"}
THRESHOLDS = {"min_change_pct": -5.0, "min_samples": 10}
BUNDLED_REASON = "measured minimum_pct=-2.473, at_layer=5, n=50 (thresholds min_change_pct=-5.0, min_samples=10)"


def entry(claim: str, model: str, task: str, outcome: str, dataset: str = "synthetic", **extra) -> dict:
    return {
        "nodeid": f"suites/test_x.py::test_{claim}[{model}-{dataset}:{task}]",
        "claim": claim,
        "model": model,
        "dataset": dataset,
        "task": task,
        "outcome": outcome,
        "measured": extra.pop("measured", {"minimum_pct": -30.0, "at_layer": 4, "n": 50}),
        "thresholds": dict(THRESHOLDS),
        **extra,
    }


def constructed() -> list[dict]:
    """Model a on C1: 3 passed, 2 expected failures, 1 failed, 1 not evaluable (over two claims, two datasets);
    model a on C2: 1 passed; model b on C1: 1 error, 1 unexpectedly passed; model b has no C2 test."""
    return [
        entry("early", "a", "t1", "passed"),
        entry("early", "a", "t2", "passed"),
        entry("drop", "a", "t1", "passed", dataset="tvbench"),
        entry(
            "early",
            "a",
            "t3",
            "xfailed",
            measured={"minimum_pct": -2.473, "at_layer": 5, "n": 50},
            xfail_reason=BUNDLED_REASON,
        ),
        entry(
            "drop",
            "a",
            "t2",
            "xfailed",
            measured={"drop_points": -1.25, "n": 50},
            xfail_reason="this model answers from single frames (measured drop_points=-1.3)",
        ),
        entry("drop", "a", "t3", "failed", measured={"drop_points": 3.5, "n": 50}),
        entry(
            "early",
            "a",
            "t4",
            "not evaluable",
            measured={},
            message="early not evaluable for a on t4: only 3 correct samples (min_samples=10)",
        ),
        entry("route", "a", "t1", "passed"),
        entry("early", "b", "t1", "error", measured={}, message="RuntimeError: out of memory"),
        entry("early", "b", "t2", "unexpectedly passed"),
    ]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def row(table: str, start: str) -> list[str]:
    (line,) = [line for line in table.splitlines() if line.startswith(f"| {start}")]
    return cells(line)


def test_a_cell_counts_each_outcome_with_its_symbol_in_the_legend_order():
    assert counts_cell({"failed": 1, "passed": 3, "not evaluable": 1, "xfailed": 2}) == "✅ 3 · ⚠️ 2 · ❌ 1 · ∅ 1"
    assert counts_cell({"error": 2, "unexpectedly passed": 1, "skipped": 4}) == "❗ 1 · 💥 2 · ⏭️ 4"
    assert counts_cell({}) == "–" and counts_cell({"passed": 0}) == "–"
    assert set(OUTCOME_SYMBOL) == set(OUTCOMES)  # every outcome of results.json has a symbol
    assert all(symbol in LEGEND for symbol in OUTCOME_SYMBOL.values()) and "– no test" in LEGEND
    with pytest.raises(ValueError, match=r"claim outcome\(s\) \['sort of'\]"):
        outcome_counts([{"outcome": "sort of"}])


def test_the_matrix_has_a_row_per_finding_a_column_per_model_and_exact_counts():
    text = claims_matrix(constructed(), FINDINGS, ["a", "b"], FINDING_OF)
    table, legend = text.split("\n\n")
    assert cells(table.splitlines()[0]) == ["finding", "a", "b"]
    assert row(table, "**C1**") == ["**C1** Cross-frame first", "✅ 3 · ⚠️ 2 · ❌ 1 · ∅ 1", "❗ 1 · 💥 1"]
    assert row(table, "**C2**") == ["**C2** Through the question", "✅ 1", "–"]
    assert len(table.splitlines()) == 4 and legend == LEGEND


def test_the_matrix_shows_every_model_and_refuses_a_claim_without_a_finding():
    text = claims_matrix(constructed(), FINDINGS, ["b"], FINDING_OF)
    assert cells(text.splitlines()[0]) == ["finding", "b", "a"]  # a model missing from `models` is not hidden
    empty = claims_matrix([], FINDINGS, ["a"], FINDING_OF)
    assert row(empty, "**C1**") == ["**C1** Cross-frame first", "–"]
    with pytest.raises(ValueError, match="claim 'mystery' of a claim entry names no finding"):
        claims_matrix([entry("mystery", "a", "t", "passed")], FINDINGS, ["a"], FINDING_OF)


def test_details_are_one_collapsed_block_per_claim_with_a_blank_line_after_the_summary():
    text = claim_details(constructed(), TITLES, FINDING_OF)
    blocks = text.split("\n\n<details>")
    assert text.count("<details>") == 3 == text.count("</details>") == len(blocks)
    lines = text.splitlines()
    summaries = [i for i, line in enumerate(lines) if line.startswith("<summary>")]
    assert [lines[i + 1] for i in summaries] == ["", "", ""]  # markdown inside <details> needs the blank line
    assert [lines[i] for i in summaries] == [
        "<summary><b>C1 · early</b> — Minimum &lt;= -5% in the first half — ✅ 2 · ⚠️ 1 · ❗ 1 · 💥 1 · ∅ 1</summary>",
        "<summary><b>C1 · drop</b> — Accuracy drops — ✅ 1 · ⚠️ 1 · ❌ 1</summary>",
        "<summary><b>C2 · route</b> — Video -/-> Question hurts — ✅ 1</summary>",
    ]
    first = [line for line in blocks[0].splitlines() if line.startswith("|")]
    assert cells(first[0]) == ["model", "dataset:task", "result", "measured (layers from 1)", "thresholds", "note"]
    assert [cells(r)[:3] for r in first[2:]] == [
        ["a", "synthetic:t1", "✅ pass"],
        ["a", "synthetic:t2", "✅ pass"],
        ["a", "synthetic:t3", "⚠️ xfail (expected)"],
        ["a", "synthetic:t4", "∅ not evaluable"],
        ["b", "synthetic:t1", "💥 ERROR"],
        ["b", "synthetic:t2", "❗ XPASS (strict: FAIL)"],
    ]


def detail_rows(text: str) -> dict[tuple[str, str, str], list[str]]:
    """(claim, model, dataset:task) -> the row's cells, from claim_details' blocks."""
    out = {}
    for block in text.split("</details>")[:-1]:
        claim = re.search(r"<b>(?:C\d · )?(\w+)</b>", block)[1]
        lines = block.splitlines()
        separator = next(i for i, line in enumerate(lines) if line.startswith("|--"))
        for line in lines[separator + 1 :]:
            if line.startswith("| "):
                r = cells(line)
                out[(claim, r[0], r[1])] = r
    return out


def test_each_row_shows_its_measured_values_once_and_the_reason_only_when_xfailed():
    rows = detail_rows(claim_details(constructed(), TITLES, FINDING_OF))
    assert len(rows) == len(constructed())
    passed = rows[("early", "a", "synthetic:t1")]
    assert passed[3:] == ["minimum_pct=-30.0, at_layer=4, n=50", "min_change_pct=-5.00, min_samples=10", ""]
    bundled = rows[("early", "a", "synthetic:t3")]  # its registered reason restates the measured values only
    assert bundled[3] == "minimum_pct=-2.47, at_layer=5, n=50"
    assert " ".join(bundled).count("minimum_pct") == 1 and " ".join(bundled).count("min_change_pct") == 1
    assert bundled[5] == "registered; its reason states the measured values"
    explained = rows[("drop", "a", "synthetic:t2")]
    assert explained[2].startswith("⚠️") and explained[3] == "drop_points=-1.25, n=50"
    assert explained[5] == "this model answers from single frames" and " ".join(explained).count("drop_points") == 1
    assert rows[("drop", "a", "synthetic:t3")][2] == "❌ FAIL" and rows[("drop", "a", "synthetic:t3")][5] == ""
    assert rows[("early", "a", "synthetic:t4")][3:] == [
        "",
        "min_change_pct=-5.00, min_samples=10",
        "only 3 correct samples (min_samples=10)",
    ]
    assert rows[("early", "b", "synthetic:t1")][5] == "RuntimeError: out of memory"
    assert rows[("early", "b", "synthetic:t2")][5].startswith("holds, but is registered as an expected failure")


def test_xfail_notes_keep_the_explanation_and_drop_the_values_shown():
    shown = {"minimum_pct": -2.473, "at_layer": 5, "n": 50}
    assert xfail_note(BUNDLED_REASON, shown, THRESHOLDS) == ""
    assert xfail_note("reason: too few layers to separate the routes", shown, THRESHOLDS) == (
        "too few layers to separate the routes"
    )
    assert xfail_note("mixes late (measured minimum_pct=-2.5, image_acc=40)", shown, THRESHOLDS) == (
        "mixes late (measured, image_acc=40)"
    )


def test_details_read_results_json_entries_and_claim_entry_objects_alike():
    entries = constructed()
    objects = [ClaimEntry(**e) for e in entries]
    assert claim_details(objects, TITLES, FINDING_OF) == claim_details(entries, TITLES, FINDING_OF)
    assert claims_matrix(objects, FINDINGS, ["a", "b"], FINDING_OF) == claims_matrix(
        entries, FINDINGS, ["a", "b"], FINDING_OF
    )


def test_a_pipe_in_a_message_does_not_break_the_table():
    text = claim_details([entry("early", "a", "t", "error", measured={}, message="shape [1|2] mismatch")])
    (line,) = [line for line in text.splitlines() if line.startswith("| a")]
    assert "shape [1\\|2] mismatch" in line
    assert "<summary><b>early</b> — 💥 1</summary>" in text  # no title or finding given


def test_the_findings_are_stated_in_the_bundled_registry():
    registry = load_registry()
    assert list(registry.findings) == ["C1", "C2", "C3", "C4", "C5"]
    assert all(s.strip() and "\n" not in s for s in registry.findings.values())
    assert {spec.claim for spec in registry.claims.values()} == set(registry.findings)
    assert registry.findings["C2"].startswith("Video information reaches the last token through the question")


def test_a_registry_file_cannot_restate_the_findings(tmp_path):
    extra = tmp_path / "claims.toml"
    extra.write_text('[findings]\nC1 = "something else"\n')
    with pytest.raises(RegistryError, match=r"unknown table\(s\) \['findings'\]"):
        load_registry([extra])


def test_a_dict_valued_measurement_is_shown_once_and_never_left_in_the_note():
    """The logit-lens claim measures ``hits={spatial: .., temporal: ..}``: the measured column dropped it and the
    note kept a fragment of it (``measured, 6518, temporal: 9119}``)."""
    from flowcheck.report.tables import _values

    measured = {"temporal_mean_layer": 4.193, "hits": {"spatial": 6518, "temporal": 9119}, "n": 304}
    reason = (
        "measured temporal_mean_layer=4.193, hits={spatial: 6518, temporal: 9119}, n=304 (thresholds min_samples=10)"
    )
    assert _values(measured) == "temporal_mean_layer=4.19, hits={spatial: 6518, temporal: 9119}, n=304"
    assert xfail_note(reason, measured, {"min_samples": 10}) == ""
    assert xfail_note("reads the video directly; " + reason, measured, {}) == "reads the video directly"
