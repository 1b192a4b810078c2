"""Write reports/<run>/ from a run record: REPORT.md (metadata, claims, the analyses' tables and figures), PNG
figures, results.json. Rendering reads the record alone (`flowcheck report results.json` needs no model)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from flowcheck.gating.table import gate_markdown
from flowcheck.record import RunRecord, summary_line
from flowcheck.report.figures import draw
from flowcheck.report.tables import claim_details, claims_matrix, markdown_table, skipped_table


def new_run_dir(report_dir: Path) -> Path:
    """A fresh, not yet existing ``<report_dir>/<YYYYmmdd-HHMMSS>[.k]`` path (not created)."""
    run_dir = Path(report_dir) / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        run_dir = run_dir.with_name(f"{run_dir.name.split('.')[0]}.{suffix}")
        suffix += 1
    return run_dir


def render(record: RunRecord, run_dir: Path) -> str:
    """Write REPORT.md, the figures and results.json into `run_dir`, all at once: they are written into a
    staging folder that is renamed into place, so an interrupted run leaves no half-written report.
    Returns the markdown. Raises FileExistsError when `run_dir` exists and is not empty."""
    data = record.to_json()  # validate before anything is written
    run_dir = Path(run_dir).resolve()  # "." (re-rendering inside the run folder) has no name to stage beside
    staging = run_dir.with_name(f".{run_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        text = _render_into(record, data, staging)
        if run_dir.exists():
            if any(run_dir.iterdir()):
                for item in staging.iterdir():
                    item.replace(run_dir / item.name)
            else:
                run_dir.rmdir()
                staging.rename(run_dir)
        else:
            staging.rename(run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return text


def _render_into(record: RunRecord, data: dict, run_dir: Path) -> str:
    meta, entries = record.metadata, record.claims
    contributions = record.contributions()
    line = summary_line(entries)
    models = [m["name"] for m in meta["models"]]
    md = [f"# flowcheck report — {meta['date']}", "", f"**{line}.**", ""]
    md += ["## Claims", "", claims_matrix(entries, record.findings, models, record.finding_of()), ""]
    md += ["Layers are counted from 1 (layer 1 is the first decoder layer), as in the paper's figures and Table 3.", ""]
    for gate in record.gates:
        md += [f"## Gate: {gate['model']} against baseline {gate['baseline']}", "", gate_markdown(gate), ""]
    md += ["## Run", "", "| | |", "|---|---|"]
    md += [
        f"| git commit | `{meta['git_commit']}` |",
        f"| duration | {meta['duration_s']} s |",
        f"| device / dtype | {meta['device']} / {meta['dtype']} |",
        f"| versions | {', '.join(f'{k} {v}' for k, v in meta['versions'].items())} |",
        f"| claims registry | {', '.join(meta['registry'])} |",
    ]
    options = meta.get("provenance", {}).get("options", {})
    chosen = [f"{k}={v['value']} ({v['source']})" for k, v in options.items() if v["source"] != "default"]
    if chosen:
        md.append(f"| options (not defaults) | {'; '.join(chosen)} |")
    for info in meta["models"]:
        details = ", ".join(f"{k}: {v}" for k, v in info.items() if k != "name" and v is not None)
        md.append(f"| model `{info['name']}` | {details} |")
    for info in meta["datasets"]:
        md.append(
            f"| dataset `{info['name']}` | {info['loaded']} samples from {info['root']}, {info['skipped']} skipped |"
        )
    md.append("")
    for contribution in contributions:
        for table in contribution.tables:
            md += [f"## {table.title}", ""] + ([table.intro, ""] if table.intro else []) + [markdown_table(table), ""]
    figures = sorted((f for c in contributions for f in c.figures), key=lambda f: f.whose)  # stable: per model
    missing = [note for c in contributions for note in c.missing]
    if figures or missing:
        md += ["## Figures", ""]
        for figure in figures:
            draw(figure, run_dir)
            heading = f"{figure.title}: {figure.whose}"
            md += [f"### {heading}", "", f"![{heading}]({figure.file})", "", figure.caption, ""]
        if missing:
            md += ["Not drawn:", ""] + [f"- {note}" for note in missing] + [""]
    if entries:
        md += ["## Claim tests", "", claim_details(entries, record.titles(), record.finding_of()), ""]
    if record.skipped:
        distinct = len({(s["dataset"], s["sample_id"]) for s in record.skipped})
        md += [f"## Skipped samples ({distinct})", "", skipped_table(record.skipped), ""]
    text = "\n".join(md)
    (run_dir / "REPORT.md").write_text(text)
    (run_dir / "results.json").write_text(json.dumps(data, indent=1))
    return text


def write_report(record: RunRecord, report_dir: Path) -> tuple[Path, str]:
    """Write the run's report into a new folder of `report_dir`; returns its REPORT.md path and a one-line
    summary. Also appends the report's text up to the figures to ``$GITHUB_STEP_SUMMARY`` when set."""
    run_dir = new_run_dir(Path(report_dir))
    text = render(record, run_dir)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as fh:
            fh.write(text.split("## Figures")[0] + "\n")
    return run_dir / "REPORT.md", summary_line(record.claims)
