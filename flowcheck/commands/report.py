"""`flowcheck report`: re-render a report from a run's results.json (no model is loaded, nothing recomputed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flowcheck.record import RunRecord, SchemaError, summary_line
from flowcheck.report.writer import render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="a results.json, or the report folder that holds one")
    parser.add_argument("--out", type=Path, help="where to write (default: next to results.json)")


def run(args: argparse.Namespace) -> int:
    path = args.results / "results.json" if args.results.is_dir() else args.results
    if not path.exists():
        raise SystemExit(f"flowcheck report: {path} not found; give a results.json written by a `pytest suites/` run")
    try:
        data = RunRecord.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SystemExit(
            f"flowcheck report: {path} is not JSON ({err}); give a results.json written by flowcheck"
        ) from None
    except SchemaError as err:
        raise SystemExit(f"flowcheck report: {path}: {err}") from None
    out = args.out or path.parent
    render(data, out)
    print(f"flowcheck: {summary_line(data.claims)} -> {out / 'REPORT.md'}")
    return 0
