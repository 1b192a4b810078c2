"""Where a run's numbers come from: the library versions and the git commit of the working tree."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from flowcheck.version import __version__


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
    """flowcheck, torch, transformers and Python versions."""
    import torch
    import transformers

    return {
        "flowcheck": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
