"""`flowcheck edges`: full / effective / random edge counts of the paper's four models vs Table 3."""

from __future__ import annotations

import argparse
import json

from tabulate import tabulate

from flowcheck.edges import matched_random_counts, paper_pathways, pathway_edges, reference_layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def edge_rows() -> list[dict]:
    """One row per paper model: edges summed over layers on its reference layout."""
    rows = []
    for name, spec in paper_pathways().items():
        layout = reference_layout(name)
        summary = pathway_edges(spec, layout)
        random_removed = sum(matched_random_counts(spec.blocked_per_layer(layout)))
        rows.append(
            {
                "model": name,
                "num_layers": spec.num_layers,
                "tokens": layout.n,
                "video_tokens": len(layout.video),
                "full_edges": summary.full,
                "effective_edges": summary.kept,
                "random_edges": summary.full - random_removed,
                "kept_fraction": round(summary.kept_fraction, 4),
                "paper_full_edges_millions": spec.paper["full"][0],
                "paper_effective_edges_millions": spec.paper["effective"][0],
                "paper_kept_fraction": spec.paper["effective"][1],
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    rows = edge_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [
        [
            r["model"],
            r["num_layers"],
            r["tokens"],
            f"{r['full_edges'] / 1e6:.1f}M ({r['paper_full_edges_millions']}M)",
            f"{r['effective_edges'] / 1e6:.1f}M ({r['paper_effective_edges_millions']}M)",
            f"{r['random_edges'] / 1e6:.1f}M",
            f"{r['kept_fraction']:.3f} ({r['paper_kept_fraction']:.2f})",
        ]
        for r in rows
    ]
    headers = ["model", "layers", "tokens", "full (paper)", "effective (paper)", "random", "kept (paper)"]
    print(tabulate(table, headers=headers))
    print(
        "\nEdges are causal (query, key) pairs of one head summed over layers, on a reference prompt of each "
        "model (flowcheck/specs/pathways.json); the random control removes as many edges as the pathways."
    )
    return 0
