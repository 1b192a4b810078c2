"""Checkpoint gating: a model's key numbers as a tolerant numeric snapshot (a syrupy extension).

`key_numbers` flattens a model's summaries into ``{kind: {metric: value}}``; the kinds
(``accuracy``, ``change_pct``, ``layer``, ``probability``, ``fraction``) carry the tolerances of
the claims registry's ``[gating.tolerances]``. The extension stores one JSON file per gate name
(the model, or the baseline chosen with ``--flow-baseline``) and matches within tolerance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from syrupy.extensions.json import JSONSnapshotExtension

from flowcheck.analyses.base import analyses
from flowcheck.analyses.summary import TaskSummary
from flowcheck.naming import file_stem

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
            allowed = max(tol.get("abs", 0.0), tol.get("rel", 0.0) * abs(b))
            if abs(a - b) > allowed + 1e-12:
                problems.append(f"{kind} {metric}: {a} vs baseline {b} (|diff| {abs(a - b):.4g} > {allowed:.4g})")
    return problems


class TolerantNumbers(JSONSnapshotExtension):
    """JSON snapshots compared within per-kind tolerances; one file per gate name, whatever the test's parameters."""

    tolerances: ClassVar[dict[str, dict[str, float]]] = {}
    last_problems: ClassVar[list[str]] = []

    @classmethod
    def get_snapshot_name(cls, *, test_location, index=0) -> str:
        # "test_gate[<model>]" is the parametrized test id, so syrupy relates the file to the test.
        return f"{test_location.methodname}[{index}]"

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        current, baseline = json.loads(serialized_data), json.loads(snapshot_data)
        type(self).last_problems = drift(current, baseline, self.tolerances)
        return not self.last_problems


def extension_with(tolerances: Mapping[str, Mapping[str, float]]) -> type[TolerantNumbers]:
    """A TolerantNumbers subclass bound to the registry's tolerances."""
    return type("TolerantNumbersWithTolerances", (TolerantNumbers,), {"tolerances": dict(tolerances)})


def gate_name(model: str) -> str:
    """The file-system-safe gate name of a model's unique run name (``org/model`` -> ``org--model``), so that two
    checkpoints never share a baseline."""
    return file_stem(model)
