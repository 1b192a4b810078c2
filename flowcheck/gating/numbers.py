"""A model's key summary numbers for the gate, compared by tolerance.

`key_numbers` flattens a model's summaries into ``{kind: {metric: value}}``; the kinds
(``accuracy``, ``change_pct``, ``layer``, ``probability``, ``fraction``) carry the tolerances of
the claims registry's ``[gating.tolerances]``. Numbers that per-sample records cover are compared by paired
tests instead (`flowcheck.gating.compare`); the others by `drift_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from flowcheck.analyses.base import analyses
from flowcheck.analyses.summary import TaskSummary
from flowcheck.gating.table import FAIL, PASS, GateRow

KINDS = ("accuracy", "change_pct", "layer", "probability", "fraction")


def key_numbers(summaries: Mapping[str, Mapping[str, TaskSummary]]) -> dict[str, dict[str, float]]:
    """{kind: {"<dataset>/<task>/<metric>": value}} of the numbers a checkpoint is gated on (layers from 1): the base
    accuracy per task and what every registered analysis contributes (`Analysis.gate_numbers`)."""
    known = analyses()
    out: dict[str, dict[str, float]] = {k: {} for k in KINDS}
    for dataset, per_task in sorted(summaries.items()):
        for task, s in sorted(per_task.items()):
            where = f"{dataset}/{task}"
            if task != "all" and s.n:
                out["accuracy"][f"{where}/base_accuracy"] = 100 * s.n_correct / s.n
            for name, summary in s.analyses.items():
                if name not in known:
                    continue
                for kind, metrics in known[name].gate_numbers(summary, task).items():
                    for metric, value in metrics.items():
                        out.setdefault(kind, {})[f"{where}/{metric}"] = value
    return {k: {m: round(float(v), 4) for m, v in d.items()} for k, d in out.items() if d}


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def drift(
    current: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    tolerances: Mapping[str, Mapping[str, float]],
) -> list[str]:
    """Every metric outside tolerance (or present on one side only), as readable lines."""
    problems = []
    for kind in sorted(set(current) | set(baseline)):
        tol = tolerances.get(kind, {})
        cur, base = current.get(kind, {}), baseline.get(kind, {})
        for metric in sorted(set(cur) | set(base)):
            if metric not in cur:
                problems.append(f"{kind} {metric}: in the baseline ({base[metric]}) but not measured now")
                continue
            if metric not in base:
                problems.append(f"{kind} {metric}: measured ({cur[metric]}) but not in the baseline")
                continue
            a, b = cur[metric], base[metric]
            if not (_finite(a) and _finite(b)):
                problems.append(f"{kind} {metric}: {a!r} vs baseline {b!r}: not a finite number (a corrupt baseline?)")
                continue
            allowed = max(tol.get("abs", 0.0), tol.get("rel", 0.0) * abs(b))
            if abs(a - b) > allowed + 1e-12:
                problems.append(f"{kind} {metric}: {a} vs baseline {b} (|diff| {abs(a - b):.4g} > {allowed:.4g})")
    return problems


def drift_rows(
    current: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    tolerances: Mapping[str, Mapping[str, float]],
    skip: Collection[str] = (),
) -> list[GateRow]:
    """One tolerance-only row per summary number (metrics in `skip` are covered by paired tests); a number on one
    side only fails."""
    rows = []
    for kind in sorted(set(current) | set(baseline)):
        tol = tolerances.get(kind, {})
        cur, base = current.get(kind, {}), baseline.get(kind, {})
        for metric in sorted((set(cur) | set(base)) - set(skip)):
            if metric not in cur or metric not in base:
                side = "not measured now" if metric not in cur else "not in the baseline"
                a, b = cur.get(metric, "—"), base.get(metric, "—")
                rows.append(GateRow(metric, str(b), str(a), "—", "—", "—", "—", FAIL, f"{kind}: {side}"))
                continue
            a, b = cur[metric], base[metric]
            if not (_finite(a) and _finite(b)):  # NaN compares as "within tolerance": never let it pass
                rows.append(GateRow(metric, repr(b), repr(a), "—", "—", "—", "—", FAIL, f"{kind}: not a finite number"))
                continue
            allowed = max(tol.get("abs", 0.0), tol.get("rel", 0.0) * abs(b))
            rows.append(
                GateRow(
                    metric,
                    f"{b:g}",
                    f"{a:g}",
                    f"{a - b:+.4g}",
                    "—",
                    "—",
                    f"±{allowed:g}",
                    FAIL if abs(a - b) > allowed + 1e-12 else PASS,
                    f"{kind}: summary number, tolerance only",
                )
            )
    return rows
