"""Deterministic choice of example samples for per-sample figures (attention maps, per-frame logit lens)."""

from __future__ import annotations

from typing import Any

from flowcheck.analyses.base import TaskView


def example_ids(view: TaskView, name: str, count: int) -> list[str]:
    """Up to `count` sample ids with results of analysis `name`: the first chosen sample (correctly answered by
    default) of each task in task-name order, then further chosen samples in dataset order; a task's own view
    gives its first `count` chosen samples. Deterministic: the same results give the same examples."""
    per = view.results.get(name, {})
    chosen = [b for b in view.baselines if b.sample_id in view.chosen and b.sample_id in per]
    picked: list[str] = []
    for task in sorted({b.task for b in chosen}):
        first = next(b.sample_id for b in chosen if b.task == task)
        picked.append(first)
    for b in chosen:
        if b.sample_id not in picked:
            picked.append(b.sample_id)
    return picked[:count]


def task_of(view: TaskView, sample_id: str) -> str:
    return next((b.task for b in view.baselines if b.sample_id == sample_id), "")


def rounded(values: Any, digits: int = 6) -> Any:
    """Nested lists of floats rounded to `digits` significant digits (cached results stay small; weights in
    [0, 1] keep an absolute error below 1e-6)."""
    if isinstance(values, (list, tuple)):
        return [rounded(v, digits) for v in values]
    return float(f"{float(values):.{digits}g}")


def safe_name(text: str, limit: int = 60) -> str:
    """`text` (a sample id) as a file-name fragment: letters, digits, - and _ kept, the rest as _, the last
    `limit` characters."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[-limit:]
