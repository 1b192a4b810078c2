"""`flowcheck pathways`: each model's own effective pathways, discovered from its knockout curves and validated by
pruning on held-out samples; optionally the paper's ranges beside them (``--paper``) and the minimal pathways
(``--minimal``).

Takes the same ``--flow-*`` options as the pytest suites (and reads the same result cache, so after a suite run it
computes nothing); ``--model`` is ``--flow-model``. Layers are shown from 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flowcheck.options import OPTIONS, OptionError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for spec in OPTIONS:
        flags = [spec.flag, "--model"] if spec.name == "models" else [spec.flag]
        if spec.switch:
            parser.add_argument(
                *flags, dest=spec.name, action="store_const", const=True, default=None, help=spec.argparse_help
            )
        else:
            parser.add_argument(
                *flags,
                dest=spec.name,
                action="append" if spec.repeatable else "store",
                default=None,
                metavar=spec.metavar,
                help=spec.argparse_help,
            )
    parser.add_argument("--paper", action="store_true", help="print the paper's Table 3 ranges beside the discovered")
    parser.add_argument(
        "--minimal",
        action="store_true",
        help="narrow each route's range greedily while validation accuracy stays within the parity tolerance",
    )
    parser.add_argument("--cached-only", action="store_true", help="read the result cache only; compute nothing")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _session(args: argparse.Namespace):
    from flowcheck import bundled
    from flowcheck.claims import load_registry
    from flowcheck.options import resolve_for
    from flowcheck.progress import stderr_progress
    from flowcheck.session import FlowSession

    cli = {spec.name: getattr(args, spec.name) for spec in OPTIONS}
    options = resolve_for(Path.cwd(), cli)
    registry = load_registry([bundled.claims_file()] + [Path(p) for p in options.claims])
    session = FlowSession(options, registry)
    session.progress = stderr_progress()
    return session, registry


def _route_rows(discovered: dict[str, Any]) -> list[list[str]]:
    rows = []
    for route, found in discovered.get("routes", {}).items():
        layers = found["layers"]
        rng = f"{layers[0]}-{layers[1]}" if layers else "none"
        minimum = "" if found["minimum_pct"] is None else f"{found['minimum_pct']:.1f}% at layer {found['at_layer']}"
        rows.append([route, rng, minimum, str(found["n"]), found["reason"]])
    return rows


def _paper_ranges(paper_model: str) -> dict[str, str]:
    from flowcheck.edges import paper_pathways

    spec = paper_pathways()[paper_model].routes()
    return {str(r.block): ("none" if r.layers is None else f"{r.layers[0] + 1}-{r.layers[1] + 1}") for r in spec.routes}


def describe(model: str, dataset: str, num_layers: int, info: dict, summary, paper_model: str = "") -> dict:
    """One model on one dataset: discovered ranges, the spec used, pruning numbers on both halves (JSON object)."""
    out = {
        "model": model,
        "dataset": dataset,
        "num_layers": num_layers,
        "spec": info.get("spec", ""),
        "source": info.get("source", ""),
        "discovered": info.get("discovered", {}),
        "discovery_samples": len(info.get("discovery_samples", [])),
        "random_seeds": info.get("random_seeds", []),
    }
    if summary is not None:
        out["validation"] = {
            "samples": summary.half,
            "n": summary.n,
            "full_accuracy": summary.full_accuracy,
            "effective_accuracy": summary.effective_accuracy,
            "random_accuracy": summary.random_accuracy,
            "random_ci": [summary.random_lo, summary.random_hi],
            "random_per_seed": summary.random_per_seed,
            "kept_fraction": summary.kept_fraction,
        }
        out["discovery_half"] = summary.discovery_half
    if paper_model:
        out["paper_model"] = paper_model
        out["paper_ranges"] = _paper_ranges(paper_model)
    return out


def render(entry: dict) -> str:
    """The text of one `describe` entry."""
    from tabulate import tabulate

    lines = [f"{entry['model']} on {entry['dataset']} ({entry['num_layers']} layers; layers counted from 1)"]
    rows = _route_rows(entry["discovered"])
    headers = ["route", "discovered", "curve minimum", "n", "no range because"]
    if "paper_ranges" in entry:
        paper = entry["paper_ranges"]
        rows = [[*r[:2], paper.get(r[0], ""), *r[2:]] for r in rows]
        headers.insert(2, f"paper ({entry['paper_model']})")
    if rows:
        n = entry["discovery_samples"]
        lines.append(f"Discovered from the knockout curves of {n} samples (the discovery half):")
        lines.append(tabulate(rows, headers=headers))
    else:
        lines.append("No discovery: the knockout sweep has no curves for this model.")
    lines.append(f"Spec used ({entry['source']}): {entry['spec']}")
    v = entry.get("validation")
    if v:
        lo, hi = v["random_ci"]
        lines.append(
            f"Pruning on {v['n']} samples ({v['samples']}): full {v['full_accuracy']:.1f}%, pathways "
            f"{v['effective_accuracy']:.1f}%, random {v['random_accuracy']:.1f}% [95% CI {lo:.1f}, {hi:.1f}] over "
            f"{len(v['random_per_seed'])} seeds; pathways keep {v['kept_fraction']:.3f} of the edges"
        )
    d = entry.get("discovery_half")
    if d:
        lines.append(
            f"Discovery half ({d['n']} samples, in-sample): full {d['full_accuracy']:.1f}%, pathways "
            f"{d['effective_accuracy']:.1f}%, random {d['random_accuracy']:.1f}%, kept {d['kept_fraction']:.3f}"
        )
    m = entry.get("minimal")
    if m and not m["within_tolerance"]:
        lines.append(
            f"Minimal pathways: none searched: the spec used already loses "
            f"{m['full_accuracy'] - m['accuracy']:.1f} points on the validation samples (tolerance "
            f"{m['max_loss_points']} points, the pruning_parity claim's)"
        )
    elif m:
        lines.append(
            f"Minimal pathways ({m['forwards']} forwards{', budget reached' if m['exhausted'] else ''}): "
            f"{m['spec']} -> accuracy {m['accuracy']:.1f}% (full {m['full_accuracy']:.1f}%, tolerance "
            f"{m['max_loss_points']} points), kept {m['kept_fraction']:.3f} of the edges"
        )
    return "\n".join(lines)


def _minimal(session, model: str, dataset: str, info: dict, registry) -> dict:
    from flowcheck.analyses.pathways_search import search_minimal
    from flowcheck.edges import RouteSpec
    from flowcheck.progress import stderr_progress

    handle = session.handle(model)
    held_out = set(info.get("discovery_samples", []))
    validation = [s for s in session.dataset(dataset) if s.id not in held_out]
    start = RouteSpec.parse(info["spec"], handle.num_layers, "keep", name="minimal")
    tolerance = registry.thresholds("pruning_parity", model)["max_loss_points"]
    engine = session.plan(model, dataset).engine
    result = search_minimal(
        handle, validation, start, session.cache, max_loss_points=tolerance, engine=engine, progress=stderr_progress()
    )
    return {
        "spec": result.spec.text(),
        "accuracy": result.accuracy,
        "full_accuracy": result.full_accuracy,
        "kept_fraction": result.kept_fraction,
        "max_loss_points": tolerance,
        "forwards": result.forwards,
        "exhausted": result.exhausted,
        "within_tolerance": result.within_tolerance,
        "steps": [vars(s) for s in result.steps],
    }


def run(args: argparse.Namespace) -> int:
    from flowcheck.claims import RegistryError
    from flowcheck.session import Case

    try:
        session, registry = _session(args)
    except (OptionError, RegistryError) as err:
        print(f"flowcheck pathways: {err}", file=sys.stderr)
        return 2
    entries = []
    for model in session.models:
        for dataset in session.options.data:
            results = session.results(model, dataset, compute=not args.cached_only)
            if "pruning" not in results.info:
                problem = results.problems.get("pruning", "no pruning results")
                print(f"flowcheck pathways: {model} on {dataset}: {problem}", file=sys.stderr)
                continue
            summary = session.summary(Case(model, dataset, "all"), compute=not args.cached_only).get("pruning")
            paper_model = registry.model_setting(model, "paper_model") or "" if args.paper else ""
            entry = describe(model, dataset, results.num_layers, results.info["pruning"], summary, paper_model)
            if args.minimal:
                entry["minimal"] = _minimal(session, model, dataset, results.info["pruning"], registry)
            entries.append(entry)
    if args.paper:
        from flowcheck.edges import paper_pathways

        shown = {e.get("paper_model") for e in entries}
        for name in paper_pathways():
            if name not in shown:
                entries.append({"paper_model": name, "paper_ranges": _paper_ranges(name), "discovered": None})
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        if entry.get("discovered") is None:
            ranges = ", ".join(f"{k}@{v}" for k, v in entry["paper_ranges"].items())
            print(f"{entry['paper_model']} (paper, Table 3; no run of it here): {ranges}\n")
        else:
            print(render(entry) + "\n")
    return 0 if entries else 1
