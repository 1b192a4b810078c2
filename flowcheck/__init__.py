"""flowcheck: information-flow claims of "Map the Flow" (ICLR 2026) as a pytest suite for video LLMs."""

from flowcheck.version import __version__ as __version__


def load(name_or_path: str, **options):
    """Load a checkpoint with its family's adapter (see `flowcheck.models.load`)."""
    from flowcheck.models import load as _load

    return _load(name_or_path, **options)
