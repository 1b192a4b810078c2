"""flowcheck: information-flow claims of "Map the Flow" (ICLR 2026) as a pytest suite for video LLMs."""

__version__ = "0.1.0"
