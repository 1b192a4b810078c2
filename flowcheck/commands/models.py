"""`flowcheck models`: supported families and known checkpoints, with what is verified offline."""

from __future__ import annotations

import argparse
import json
from importlib import resources

from tabulate import tabulate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def known_checkpoints() -> list[dict]:
    return json.loads(resources.files("flowcheck.specs").joinpath("checkpoints.json").read_text())["checkpoints"]


def run(args: argparse.Namespace) -> int:
    from flowcheck.models import families

    fams = [
        {"family": name, "model_types": list(cls.model_types), "description": cls.description}
        for name, cls in sorted(families().items())
    ]
    checkpoints = known_checkpoints()
    if args.json:
        print(json.dumps({"families": fams, "checkpoints": checkpoints}, indent=2))
        return 0
    print(
        tabulate(
            [[f["family"], ", ".join(f["model_types"]) or f"NAME@{f['family']}", f["description"]] for f in fams],
            headers=["family", "config model_type", "notes"],
        )
    )
    print()
    rows = [[c["name"], c["family"], c["num_layers"], c["tokens_per_frame"], c["status"]] for c in checkpoints]
    print(tabulate(rows, headers=["checkpoint", "family", "layers", "tokens/frame", "status"]))
    return 0
