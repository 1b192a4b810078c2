"""The gate: a new run's gating record against a recorded baseline.

A gating record (one JSON snapshot per gate name, `flowcheck.gating.snapshot`) is::

    {"format": 2, "provenance": {...}, "numbers": {kind: {metric: value}}, "samples": {dataset: {task: {...}}}}

(``samples``: `flowcheck.gating.samples`). Baselines written before per-sample records (format 1: the ``numbers``
object alone) are still read: their numbers are compared by tolerance only, with a note.

Order: the provenance check (refused fields stop the comparison), then per task the paired tests
(`flowcheck.gating.paired`) and the curve profiles (`flowcheck.gating.profile`), then every summary number the paired
tests do not cover, by tolerance (`[gating.tolerances]`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowcheck.gating.config import GateConfig
from flowcheck.gating.mismatch import ProvenanceCheck, compare_provenance
from flowcheck.gating.numbers import drift_rows
from flowcheck.gating.paired import accuracy_rows, curve_rows, pair
from flowcheck.gating.profile import profile_rows
from flowcheck.gating.table import GateRow

FORMAT = 2
OLD_FORMAT_NOTE = (
    "the baseline has no per-sample records (recorded by an older flowcheck): summary numbers compared by "
    "tolerance only, no paired test; re-record it (--snapshot-update) for McNemar and bootstrap tests"
)


def parse_record(data: Mapping[str, Any]) -> dict[str, Any]:
    """A gating record in the current shape: a format-1 baseline (the numbers alone) becomes ``{"format": 1,
    "numbers": ..., "samples": {}, "provenance": {}}``. Raises ValueError for a newer format than this flowcheck."""
    if "format" not in data:
        return {"format": 1, "numbers": dict(data), "samples": {}, "provenance": {}}
    if data["format"] > FORMAT:
        raise ValueError(
            f"gating record format {data['format']} is newer than this flowcheck reads ({FORMAT}); upgrade flowcheck"
        )
    return {"samples": {}, "provenance": {}, **data}


@dataclass
class GateResult:
    """The outcome of one gate: `rows` (every compared metric), `notes`, per ``dataset/task`` the unpaired sample
    ids, and the provenance check (`refused` fields stop the comparison: no rows)."""

    model: str
    baseline: str
    rows: list[GateRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unpaired: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    provenance: ProvenanceCheck = field(default_factory=ProvenanceCheck)
    alpha: float = 0.05
    resampling: str = "video"

    @property
    def refused(self) -> bool:
        return bool(self.provenance.refused)

    @property
    def passed(self) -> bool:
        return not self.refused and not any(r.failed for r in self.rows)

    def failing_rows(self) -> list[GateRow]:
        return [r for r in self.rows if r.failed]

    def message(self) -> str:
        """The failing test's message: the refused provenance fields, or every failing row."""
        if self.refused:
            return f"{self.model} cannot be gated against baseline {self.baseline}: {self.provenance.message()}"
        lines = [r.line() for r in self.failing_rows()]
        return (
            f"{self.model} differs from baseline {self.baseline} beyond tolerance and significantly (alpha "
            f"{self.alpha}) in {len(lines)} of {len(self.rows)} rows:\n  " + "\n  ".join(lines)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON object of the result (results.json ``gates``; `flowcheck.gating.table.gate_markdown` renders it)."""
        return {
            "model": self.model,
            "baseline": self.baseline,
            "passed": self.passed,
            "alpha": self.alpha,
            "resampling": self.resampling,
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
            "unpaired": self.unpaired,
            "refused": self.provenance.refused,
            "allowed": self.provenance.allowed,
        }


def gate(
    new: Mapping[str, Any],
    baseline: Mapping[str, Any],
    config: GateConfig,
    *,
    model: str = "new",
    baseline_name: str = "baseline",
    allow: Iterable[str] = (),
) -> GateResult:
    """Compare gating records `new` and `baseline` (either format) with `config`; `allow`: provenance fields the
    caller allows to differ. Never raises on a difference: the result says what differs."""
    cur, old = parse_record(new), parse_record(baseline)
    result = GateResult(model, baseline_name, alpha=config.alpha, resampling=config.resampling)
    result.provenance = compare_provenance(old["provenance"], cur["provenance"], config.number_changing, allow)
    if not result.provenance.checked:
        result.notes.append("the baseline records no provenance: settings not checked")
    if result.refused:
        return result
    covered: set[str] = set()
    if not old["samples"] or not cur["samples"]:
        result.notes.append(OLD_FORMAT_NOTE if old["format"] < FORMAT else "no per-sample records: tolerance only")
    else:
        flat_total = 0
        for dataset in sorted(set(old["samples"]) | set(cur["samples"])):
            tasks_old, tasks_new = old["samples"].get(dataset, {}), cur["samples"].get(dataset, {})
            for task in sorted(set(tasks_old) | set(tasks_new)):
                where = f"{dataset}/{task}"
                if task not in tasks_old or task not in tasks_new:
                    side = "baseline" if task in tasks_old else "new run"
                    result.notes.append(f"{where}: only in the {side}; not compared")
                    continue
                b, n = tasks_old[task], tasks_new[task]
                pairing = pair(b, n)
                result.unpaired[where] = {"baseline_only": pairing.baseline_only, "new_only": pairing.new_only}
                result.rows += accuracy_rows(where, b, n, pairing, config)
                rows, significant = curve_rows(where, b, n, pairing, config)
                result.rows += rows
                rows, flat = profile_rows(where, b, n, pairing, config, significant)
                result.rows += rows
                flat_total += flat
                covered |= {f"{where}/base_accuracy"} | {f"{where}/{k}" for k in set(b["correct"]) & set(n["correct"])}
                for condition in set(b["curves"]) & set(n["curves"]):
                    covered |= {f"{where}/{condition}/minimum", f"{where}/{condition}/argmin"}
        unpaired = sum(len(v["baseline_only"]) + len(v["new_only"]) for v in result.unpaired.values())
        result.notes.append(
            f"paired tests on samples present in both runs ({unpaired} unpaired); intervals "
            f"{100 * config.confidence:g}% ({config.n_boot} {config.resampling}-level bootstrap resamples"
            + (", curve windows Bonferroni-corrected" if config.curve_correction == "bonferroni" else "")
            + f"); a row fails when its difference exceeds the tolerance and is significant at alpha {config.alpha}"
        )
        if flat_total:
            result.notes.append(
                f"{flat_total} flat curves (range below min_range_pct in both runs) have no profile check"
            )
    summary_rows = drift_rows(cur["numbers"], old["numbers"], config.tolerances, skip=covered)
    unpaired = sum(len(v["baseline_only"]) + len(v["new_only"]) for v in result.unpaired.values())
    if summary_rows and unpaired:
        result.notes.append(
            f"summary numbers (tolerance only) are over each run's own samples: with {unpaired} unpaired samples "
            "they also differ because the samples differ"
        )
    result.rows += summary_rows
    return result
