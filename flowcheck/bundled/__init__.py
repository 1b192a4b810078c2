"""The bundled miniatures: two tiny LLaVA-NeXT-Video checkpoints and their claims registry, shipped as package data.

They live inside the package (``flowcheck/bundled/``), so a non-editable ``pip install .`` carries them and
``--flow-model tiny-video-ft`` works from any directory; nothing here reaches into the source checkout.

- ``tiny-video-ft/``, ``tiny-image/``: ``save_pretrained`` folders (weights, processor, chat template, model
  card, training log, held-out metrics), written by ``python -m flowcheck.tiny.train`` and
  ``python -m flowcheck.tiny.card``; see ``fixtures/README.md`` in the repository for how to retrain them.
- ``claims.toml``: the claims registry entries of the two models (paired image model, pathway layers,
  strict expected failures with the measured reasons), loaded by the pytest plugin for every run.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

MODELS: dict[str, str] = {"tiny-video-ft": "tiny-video-ft", "tiny-image": "tiny-image"}
"""Bundled model name -> its folder in this package."""


def root() -> Path:
    """This package's folder on disk.

    Raises RuntimeError when flowcheck is imported from a zip archive (checkpoints must be real files for
    transformers to load them): install flowcheck as ordinary files (``pip install``).
    """
    folder = resources.files(__name__)
    path = Path(str(folder))
    if not path.is_dir():
        raise RuntimeError(
            f"flowcheck's bundled models are not a folder on disk ({folder}); flowcheck must be installed as "
            "files, not imported from a zip archive, to load them"
        )
    return path


def model_dir(name: str) -> Path:
    """The folder of bundled model `name` (a key of `MODELS`; KeyError otherwise). It may be incomplete: callers
    check for ``config.json``."""
    return root() / MODELS[name]


def claims_file() -> Path:
    """The claims registry of the bundled models (``claims.toml``)."""
    return root() / "claims.toml"
