"""`flowcheck merge`: combine result caches (e.g. from shards on several machines) into one."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowcheck.cache import merge_caches


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", type=Path, nargs="+", help="cache directories to merge from")
    parser.add_argument("--into", type=Path, required=True, help="the cache directory to merge into")


def run(args: argparse.Namespace) -> int:
    try:
        copied, present = merge_caches(list(args.sources), args.into)
    except FileNotFoundError as err:
        raise SystemExit(f"flowcheck merge: {err}") from None
    print(f"merged {copied} results into {args.into} ({present} were already there)")
    return 0
