"""Where a run's numbers come from: library versions, the git commit, the resolved options with their source, and
the hash of a checkpoint's prompt template. Plain data in, plain data out (a leaf module)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowcheck.version import __version__

# Where a checkpoint folder keeps its chat template, in transformers' order of preference (processor, tokenizer).
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "processor_config.json", "tokenizer_config.json")
NO_TEMPLATE = "none (the adapter's built-in prompt; flowcheck's version identifies it)"


def git_commit(cwd: Path) -> str:
    """The short commit hash of the git tree at `cwd`, or "unknown" (not a git tree, git missing)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    """flowcheck, torch, transformers, numpy, scipy and Python versions."""
    import numpy
    import scipy
    import torch
    import transformers

    return {
        "flowcheck": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }


def prompt_template_hash(folder: Path | str) -> str:
    """``sha256:<16 hex>`` of the chat template a checkpoint folder ships (the first of `TEMPLATE_FILES` that holds
    one: a ``.jinja`` file's text, else the ``chat_template`` value of the JSON file), or `NO_TEMPLATE`."""
    root = Path(folder)
    for name in TEMPLATE_FILES:
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if not name.endswith(".jinja"):
            try:
                value = json.loads(text).get("chat_template")
            except (ValueError, AttributeError):
                continue
            if not value:
                continue
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return NO_TEMPLATE


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # paths


def resolved_options(values: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every option as ``{name: {"value": JSON value, "source": "command line" | "pyproject.toml" |
    "environment" | "default"}}`` (the sources of `flowcheck.options.resolve`)."""
    return {name: {"value": _plain(values[name]), "source": sources.get(name, "default")} for name in sorted(values)}
