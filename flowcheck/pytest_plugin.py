"""pytest plugin (registered through the `pytest11` entry point). Kept import-light: torch loads lazily."""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    group = parser.getgroup("flowcheck", "flowcheck: information-flow claims for video LLMs")
    group.addoption(
        "--flow-seed",
        default=None,
        type=int,
        help="seed for every random choice flowcheck makes (bootstrap, random pruning control)",
    )
