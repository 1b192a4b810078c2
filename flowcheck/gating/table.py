"""The gate's result as rows of a markdown table (metric, baseline, new, difference, CI, p-value, tolerance,
verdict): in REPORT.md, in ``$GITHUB_STEP_SUMMARY`` and, the failing rows only, in the failing test's message.

Stdlib only: the report renders these rows from results.json without the session or a model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

COLUMNS = ("metric", "baseline", "new", "difference", "CI", "p-value", "tolerance", "verdict")

# Verdicts: FAIL only when a difference exceeds its tolerance and is significant (or a profile check fails).
PASS, FAIL = "pass", "FAIL"
MOVED = "moved, not significant"
SIGNIFICANT = "significant, within tolerance"


@dataclass(frozen=True)
class GateRow:
    """One compared metric, every value already formatted for reading (units in the text: accuracy points,
    relative change in %, layers from 1). `test` names how it was decided (McNemar, paired bootstrap, profile,
    tolerance only)."""

    metric: str
    baseline: str
    new: str
    difference: str
    ci: str
    p_value: str
    tolerance: str
    verdict: str
    test: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL

    def cells(self) -> list[str]:
        return [
            f"`{self.metric}`",
            self.baseline,
            self.new,
            self.difference,
            self.ci,
            self.p_value,
            self.tolerance,
            f"**{self.verdict}**" if self.failed else self.verdict,
        ]

    def line(self) -> str:
        """The row as one readable line (the failing test's message)."""
        return (
            f"{self.metric}: baseline {self.baseline}, new {self.new}, difference {self.difference} "
            f"(CI {self.ci}, p {self.p_value}; {self.test}); tolerance {self.tolerance}"
        )

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> GateRow:
        return cls(**{k: str(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def markdown_rows(rows: Iterable[GateRow]) -> str:
    """The rows as a markdown table (COLUMNS)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_escape(c) for c in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def gate_markdown(gate: Mapping) -> str:
    """A gate result (`GateResult.to_dict`) as a markdown section body: verdict line, refused provenance fields,
    notes, unpaired samples, the failing rows, and every row in a folded `<details>` block."""
    rows = [GateRow.from_dict(r) for r in gate.get("rows", [])]
    failing = [r for r in rows if r.failed]
    refused = gate.get("refused", [])
    verdict = "refused" if refused else ("FAILED" if failing else "passed")
    out = [
        f"**{gate['model']} against baseline {gate['baseline']}: {verdict}** "
        f"({len(failing)} of {len(rows)} rows fail; alpha {gate.get('alpha')}, {gate.get('resampling')} bootstrap).",
        "",
    ]
    if refused:
        out += ["Provenance differs in fields that change numbers (allow with `--flow-gate-allow FIELD,...`):", ""]
        out += [f"- `{f['field']}`: baseline `{f['baseline']}`, new `{f['new']}`" for f in refused] + [""]
    allowed = gate.get("allowed", [])
    if allowed:
        out += ["Allowed provenance differences: " + ", ".join(f"`{f['field']}`" for f in allowed), ""]
    for note in gate.get("notes", []):
        out += [f"- {note}"]
    if gate.get("notes"):
        out.append("")
    unpaired = {k: v for k, v in gate.get("unpaired", {}).items() if v.get("baseline_only") or v.get("new_only")}
    if unpaired:
        out += ["Unpaired samples (in one run only; left out of the paired tests):", ""]
        for where, sides in sorted(unpaired.items()):
            for side in ("baseline_only", "new_only"):
                ids = sides.get(side, [])
                if ids:
                    shown = ", ".join(ids[:20]) + (f", ... ({len(ids) - 20} more)" if len(ids) > 20 else "")
                    out.append(f"- {where}: {len(ids)} {side.replace('_', ' ')}: {shown}")
        out.append("")
    if failing:
        out += ["Failing rows:", "", markdown_rows(failing), ""]
    if rows:  # every row, folded: a gate has one row per metric, window and profile (over a hundred on 8 layers)
        out += [f"<details><summary>All {len(rows)} rows</summary>", "", markdown_rows(rows), "", "</details>", ""]
    return "\n".join(out)
