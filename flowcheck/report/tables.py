"""Markdown tables of a run: claims, the paper's Table 2 and Table 3 shapes, skipped samples."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources

from tabulate import tabulate

from flowcheck.claims import TaskSummary

OUTCOME_LABEL = {
    "passed": "pass",
    "failed": "FAIL",
    "xfailed": "xfail (expected)",
    "not evaluable": "not evaluable",
    "skipped": "skipped",
    "error": "ERROR",
    "unexpectedly passed": "XPASS (strict: FAIL)",
}


def _paper_numbers() -> dict:
    data = json.loads(resources.files("flowcheck.specs").joinpath("pathways.json").read_text())
    return data["models"]


PAPER_TABLE2 = {
    "LLaVA-NeXT-7B-Video-FT": {
        "action_antonym": -24.1,
        "action_sequence": -20.2,
        "scene_transition": -18.0,
        "moving_direction": -44.8,
        "object_count": -60.8,
    }
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


def table2(summaries: Mapping[tuple[str, str], Mapping[str, TaskSummary]], paper_model_of: Mapping[str, str]) -> str:
    """Accuracy drop with cross-frame attention blocked in the first half of the layers, per task.

    Cells: drop in accuracy points (relative % in brackets); the paper's value in braces where the
    model is one of the paper's (the paper does not say whether its numbers are points or %).
    """
    tasks = sorted({t for per_task in summaries.values() for t in per_task if t != "all"})
    rows = []
    for (model, dataset), per_task in sorted(summaries.items()):
        row = [model, dataset]
        paper = PAPER_TABLE2.get(paper_model_of.get(model, ""), {})
        for task in tasks:
            s = per_task.get(task)
            if s is None or s.accuracy is None:
                row.append("")
                continue
            a = s.accuracy
            if not s.n_correct or a.base <= 0:
                row.append(f"n/a (0 of {s.n} correct)")
                continue
            cell = f"{a.drop_points:+.1f} ({a.drop_relative:+.0f}%)"
            if task in paper:
                cell += f" {{paper {paper[task]:+.1f}}}"
            row.append(cell)
        rows.append(row)
    return tabulate(rows, headers=["model", "dataset", *tasks], tablefmt="github")


def table3(
    summaries: Mapping[tuple[str, str], Mapping[str, TaskSummary]],
    paper_model_of: Mapping[str, str],
    video_tokens: Mapping[str, int],
) -> str:
    """Edges and accuracy under full / effective-pathway / random attention, one column per dataset."""
    datasets = sorted({d for _, d in summaries})
    paper = _paper_numbers()
    rows = []
    for model in sorted({m for m, _ in summaries}):
        for kind in ("full", "effective", "random"):
            row = [model, video_tokens.get(model, ""), kind]
            edges = None
            accs = []
            for dataset in datasets:
                s = summaries.get((model, dataset), {}).get("all")
                p = s.pruning if s else None
                if p is None:
                    accs.append("")
                    continue
                edges = edges or {"full": p.full_edges, "effective": p.effective_edges, "random": p.random_edges}
                accs.append(f"{getattr(p, f'{kind}_accuracy'):.1f}")
            if edges:
                row.append(f"{edges[kind] / 1e3:.1f}k ({edges[kind] / edges['full']:.2f})")
            else:
                row.append("")
            row += accs
            paper_model = paper.get(paper_model_of.get(model, ""))
            if paper_model:
                e, fraction, tv, to = paper_model["paper"][kind]
                row.append(f"{e}M ({fraction:.2f}); TVBench {tv}; TOMATO {to}")
            else:
                row.append("")
            rows.append(row)
    return tabulate(
        rows, headers=["model", "video tokens", "attention", "edges (kept)", *datasets, "paper"], tablefmt="github"
    )


def skipped_table(skipped: Sequence[Mapping[str, str]], limit: int = 50) -> str:
    """One row per skipped sample (dataset, sample, file, reason, models that skipped it)."""
    rows = [[s["dataset"], s["sample_id"], s["file"], s["reason"], s.get("models", "")] for s in skipped[:limit]]
    text = tabulate(rows, headers=["dataset", "sample", "file", "reason", "skipped for"], tablefmt="github")
    if len(skipped) > limit:
        text += f"\n\n... and {len(skipped) - limit} more (see results.json)."
    return text
