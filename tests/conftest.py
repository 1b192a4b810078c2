"""Tests import their helpers (tiny models, the authors' reference) from this folder."""

import builtins
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def refuse_remote_code_prompts(monkeypatch):
    """Fail the test if transformers asks whether to run a checkpoint's own code (it reads input())."""
    monkeypatch.setattr(builtins, "input", lambda *_: pytest.fail("transformers asked to run the checkpoint's code"))
