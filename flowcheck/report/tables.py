"""Markdown tables of a run: the claims matrix and per-claim details, the analyses' tables
(`flowcheck.analyses.specs.Table`), skipped samples."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tabulate import tabulate

from flowcheck.analyses.specs import Table
from flowcheck.record.schema import OUTCOMES

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


def markdown_table(table: Table) -> str:
    """An analysis's table (`flowcheck.analyses.specs.Table`) as GitHub markdown; floats as `_short` shows them."""
    rows = [[_short(v) if isinstance(v, float) else v for v in row] for row in table.rows]
    return tabulate(rows, headers=table.headers, tablefmt="github")


# -- the claims matrix and the per-claim details ------------------------------------------------

# One symbol per outcome, in the order a cell lists them.
OUTCOME_SYMBOL = {
    "passed": "✅",
    "xfailed": "⚠️",
    "failed": "❌",
    "unexpectedly passed": "❗",
    "error": "💥",
    "not evaluable": "∅",
    "skipped": "⏭️",
}
OUTCOME_MEANING = {
    "passed": "passed",
    "xfailed": "expected failure (registered)",
    "failed": "failed",
    "unexpectedly passed": "unexpectedly passed (strict expected failure: counts as a failure)",
    "error": "error",
    "not evaluable": "not evaluable (too little evidence)",
    "skipped": "skipped",
}
NO_TEST = "–"
LEGEND = " · ".join(f"{OUTCOME_SYMBOL[o]} {OUTCOME_MEANING[o]}" for o in OUTCOME_SYMBOL) + f" · {NO_TEST} no test"


def _field(entry: Any, key: str, default: Any = None) -> Any:
    """A claim entry's field, from a results.json mapping or a `ClaimEntry`-like object."""
    if isinstance(entry, Mapping):
        return entry.get(key, default)
    return getattr(entry, key, default)


def outcome_counts(entries: Iterable[Any]) -> Counter:
    """How many claim entries have each outcome. Raises ValueError for an outcome the schema does not know."""
    counts = Counter(_field(e, "outcome") for e in entries)
    unknown = sorted(str(o) for o in set(counts) - set(OUTCOME_SYMBOL))
    if unknown:
        raise ValueError(f"claim outcome(s) {unknown} are not one of {', '.join(OUTCOMES)}")
    return counts


def counts_cell(counts: Mapping[str, int]) -> str:
    """``✅ 3 · ⚠️ 2 · ❌ 1 · ∅ 1``: each outcome present with its count, in the legend's order; ``–`` for none."""
    parts = [f"{symbol} {counts[o]}" for o, symbol in OUTCOME_SYMBOL.items() if counts.get(o)]
    return " · ".join(parts) or NO_TEST


def _escape(text: str) -> str:
    """Text safe in a markdown table cell: ``|`` escaped, and ``<`` before a letter (an HTML tag) written ``&lt;``."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text)).replace("|", "\\|")


def _html(text: str) -> str:
    """Text safe inside an HTML element (``&`` and ``<`` escaped; ``->`` stays readable)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;")


def claims_matrix(
    entries: Iterable[Any], findings: Mapping[str, str], models: Sequence[str], finding_of: Mapping[str, str]
) -> str:
    """The claims matrix that opens the report: one row per finding, one column per model, and a legend line.

    `entries` are claim entries as in results.json (`ClaimEntry` fields ``claim``, ``model``, ``outcome``);
    `findings` maps each finding (``"C1"`` ..) to its one-line statement, in row order; `models` gives the column
    order (models of `entries` not in it follow, sorted); `finding_of` maps each claim name to its finding (the
    ``claim`` field of specs/claims.toml). A cell counts the outcomes of the finding's claim tests for the model
    over every dataset and task (`counts_cell`). Raises ValueError for an entry whose claim has no finding.
    """
    entries = list(entries)
    grid: dict[tuple[str, str], list[Any]] = {}
    for e in entries:
        claim = _field(e, "claim")
        if claim not in finding_of:
            raise ValueError(
                f"claim {claim!r} of a claim entry names no finding; pass finding_of with every claim of the run "
                "(the `claim` field of each [claims.*] in specs/claims.toml)"
            )
        grid.setdefault((finding_of[claim], _field(e, "model")), []).append(e)
    columns = list(dict.fromkeys(models))
    columns += sorted({m for _, m in grid} - set(columns))
    rows_of = list(findings) + sorted({f for f, _ in grid} - set(findings))
    rows = []
    for finding in rows_of:
        statement = findings.get(finding, "")
        label = f"**{finding}** {statement}".rstrip()
        rows.append([_escape(label), *(counts_cell(outcome_counts(grid.get((finding, m), []))) for m in columns)])
    table = tabulate(
        rows, headers=["finding", *(_escape(m) for m in columns)], tablefmt="github", disable_numparse=True
    )
    return f"{table}\n\n{LEGEND}"


_PAIR = re.compile(r"\b([A-Za-z_]\w*)=(?:\{[^{}]*\}|[^\s,;(){}]+)")  # key=value or key={...} (a dict value)


def xfail_note(reason: str, measured: Mapping[str, Any], thresholds: Mapping[str, Any]) -> str:
    """The registered expected-failure reason without the values the row shows already.

    Drops ``key=value`` pairs whose key is a measured value or a threshold of the row, the ``(thresholds ...)``
    part, and a ``measured`` word left with nothing after it; what remains is the registry's own explanation
    ("" when the reason only restated the values, as the bundled models' reasons do).
    """
    known = set(measured) | set(thresholds)
    text = re.sub(r"^\s*reason:\s*", "", reason or "")
    text = re.sub(r"\(\s*thresholds\b[^)]*\)", "", text)
    text = _PAIR.sub(lambda m: "" if m[1] in known else m[0], text)
    text = re.sub(r"\s*(,\s*)+", ", ", text)  # separators of the pairs removed
    text = re.sub(r"\(\s*,\s*", "(", re.sub(r"\s*,\s*\)", ")", text))
    text = re.sub(r"\bmeasured\b(?=[\s,;]*(?:$|\)))", "", text)
    text = re.sub(r"\(\s*[,;\s]*\)", "", text)  # parentheses left empty
    text = re.sub(r"\s+", " ", text)
    return text.strip(" ,;:")


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return _short(value)


def _values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in values.items())


def _note(entry: Any) -> str:
    """The row's note: why an expected failure is expected, or why a test gave no verdict."""
    outcome, message = _field(entry, "outcome"), _field(entry, "message", "") or ""
    measured, thresholds = _field(entry, "measured", {}) or {}, _field(entry, "thresholds", {}) or {}
    if outcome == "xfailed":
        return xfail_note(_field(entry, "xfail_reason", "") or "", measured, thresholds) or (
            "registered; its reason states the measured values"
        )
    if outcome == "unexpectedly passed":
        return "holds, but is registered as an expected failure (strict): update the registry entry"
    if outcome in ("not evaluable", "skipped", "error") or not measured:
        said = f"{_field(entry, 'claim')} {outcome} for {_field(entry, 'model')} on {_field(entry, 'task')}: "
        return message.removeprefix(said)  # the row names the claim, model and task already
    return ""


def claim_details(
    entries: Iterable[Any], titles: Mapping[str, str] | None = None, finding_of: Mapping[str, str] | None = None
) -> str:
    """The per-test details: one collapsed ``<details>`` block per claim, one table row per test inside.

    The summary line gives the finding (from `finding_of`, claim name -> ``"C1"`` ..), the claim name, its title
    (from `titles`, claim name -> title) and the outcome counts. A row gives the model, ``dataset:task``, the
    outcome, the measured values (layers counted from 1) once, the thresholds, and a note: the expected-failure
    reason for xfailed rows only (without the values already shown), the message of a test that gave no verdict.
    Claims are ordered by finding, then in the order of `titles` (the registry's), then by name.
    """
    titles, finding_of = titles or {}, finding_of or {}
    by_claim: dict[str, list[Any]] = {}
    for e in entries:
        by_claim.setdefault(_field(e, "claim"), []).append(e)
    order = list(titles)

    def key(claim: str) -> tuple:
        return (finding_of.get(claim, ""), order.index(claim) if claim in order else len(order), claim)

    blocks = []
    for claim in sorted(by_claim, key=key):
        tests = sorted(by_claim[claim], key=lambda e: (_field(e, "model"), _field(e, "dataset", ""), _field(e, "task")))
        name = f"{finding_of[claim]} · {claim}" if claim in finding_of else claim
        title = f" — {_html(titles[claim])}" if claim in titles else ""
        counts = counts_cell(outcome_counts(tests))
        summary = f"<summary><b>{_html(name)}</b>{title} — {counts}</summary>"
        rows = []
        for e in tests:
            outcome = _field(e, "outcome")
            rows.append(
                [
                    _escape(_field(e, "model")),
                    _escape(f"{_field(e, 'dataset', '')}:{_field(e, 'task')}"),
                    f"{OUTCOME_SYMBOL[outcome]} {OUTCOME_LABEL.get(outcome, outcome)}",
                    _escape(_values(_field(e, "measured", {}) or {})),
                    _escape(_values(_field(e, "thresholds", {}) or {})),
                    _escape(_note(e)),
                ]
            )
        table = tabulate(
            rows,
            headers=["model", "dataset:task", "result", "measured (layers from 1)", "thresholds", "note"],
            tablefmt="github",
            disable_numparse=True,
        )
        blocks.append(f"<details>\n{summary}\n\n{table}\n\n</details>")
    return "\n\n".join(blocks)


def skipped_table(skipped: Sequence[Mapping[str, str]], limit: int = 50) -> str:
    """One row per skipped sample (dataset, sample, file, reason, models that skipped it)."""
    rows = [[s["dataset"], s["sample_id"], s["file"], s["reason"], s.get("models", "")] for s in skipped[:limit]]
    text = tabulate(rows, headers=["dataset", "sample", "file", "reason", "skipped for"], tablefmt="github")
    if len(skipped) > limit:
        text += f"\n\n... and {len(skipped) - limit} more (see results.json)."
    return text
