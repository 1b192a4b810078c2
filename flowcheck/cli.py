"""The `flowcheck` command. Each subcommand lives in its own module under `flowcheck.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; each module defines `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "edges": ("flowcheck.commands.edges", "edge counts of the effective pathways vs the paper's Table 3"),
    "demo": ("flowcheck.commands.demo", "run the knockout engine on a small built-in model"),
    "synth": ("flowcheck.commands.synth", "generate the synthetic temporal benchmark (TVBench layout)"),
    "report": ("flowcheck.commands.report", "re-render a report from a run's results.json"),
    "merge": ("flowcheck.commands.merge", "combine result caches (e.g. of shards)"),
    "models": ("flowcheck.commands.models", "supported model families and known checkpoints"),
    "verify": ("flowcheck.commands.verify", "check a model adapter's contract on a real checkpoint (one sample)"),
    "pathways": ("flowcheck.commands.pathways", "each model's own effective pathways: discovered, validated, minimal"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's module is imported (commands import torch lazily)."""
    parser = argparse.ArgumentParser(prog="flowcheck", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if only in (None, name):
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(chosen).parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
