"""Markdown tables of a run: claims, the analyses' tables (`flowcheck.analyses.specs.Table`), skipped samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tabulate import tabulate

from flowcheck.analyses.specs import Table

OUTCOME_LABEL = {
    "passed": "pass",
    "failed": "FAIL",
    "xfailed": "xfail (expected)",
    "not evaluable": "not evaluable",
    "skipped": "skipped",
    "error": "ERROR",
    "unexpectedly passed": "XPASS (strict: FAIL)",
}


def _short(value) -> str:
    if isinstance(value, float):
        if 0 < abs(value) < 0.01:
            return f"{value:.2g}"  # a p-value of 2e-4 is not 0.00
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def claims_table(entries: Sequence[Mapping]) -> str:
    """One row per claim test: result and the measured values next to the thresholds."""
    rows = []
    for e in sorted(entries, key=lambda e: (e["claim"], e["model"], e.get("dataset", ""), e["task"])):
        measured = ", ".join(f"{k}={_short(v)}" for k, v in e.get("measured", {}).items() if not isinstance(v, dict))
        limits = ", ".join(f"{k}={_short(v)}" for k, v in e.get("thresholds", {}).items())
        note = "registered" if e.get("outcome") in ("xfailed", "unexpectedly passed") else ""
        if not measured:
            measured = e.get("message", "")
        rows.append(
            [
                e["claim"],
                e["model"],
                f"{e.get('dataset', '')}:{e['task']}",
                OUTCOME_LABEL.get(e.get("outcome"), e.get("outcome")),
                measured,
                limits,
                note,
            ]
        )
    return tabulate(
        rows,
        headers=["claim", "model", "task", "result", "measured (layers from 1)", "thresholds", "expected failure"],
        tablefmt="github",
    )


def markdown_table(table: Table) -> str:
    """An analysis's table (`flowcheck.analyses.specs.Table`) as GitHub markdown; floats as `_short` shows them."""
    rows = [[_short(v) if isinstance(v, float) else v for v in row] for row in table.rows]
    return tabulate(rows, headers=table.headers, tablefmt="github")


def skipped_table(skipped: Sequence[Mapping[str, str]], limit: int = 50) -> str:
    """One row per skipped sample (dataset, sample, file, reason, models that skipped it)."""
    rows = [[s["dataset"], s["sample_id"], s["file"], s["reason"], s.get("models", "")] for s in skipped[:limit]]
    text = tabulate(rows, headers=["dataset", "sample", "file", "reason", "skipped for"], tablefmt="github")
    if len(skipped) > limit:
        text += f"\n\n... and {len(skipped) - limit} more (see results.json)."
    return text
