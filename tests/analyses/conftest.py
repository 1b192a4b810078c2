"""Fixtures shared by the analysis tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import flowcheck

BUNDLED = str(Path(flowcheck.__file__).parent / "bundled" / "tiny-video-ft")


@pytest.fixture(scope="module")
def bundled():
    """The bundled miniature tiny-video-ft, loaded once per test module."""
    return flowcheck.load(BUNDLED)
