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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowcheck", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
