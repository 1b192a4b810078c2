"""Tests import their helpers (tiny models, the authors' reference) from this folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
