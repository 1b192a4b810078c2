"""A content-addressed result cache: plain JSON files, atomic writes, shareable between machines.

A key is the SHA-256 of a canonical JSON description of everything a result depends on (model
fingerprint, sample content, analysis parameters, flowcheck version). Files live at
``<root>/<kind>/<key[:2]>/<key>.json``; writing goes through a temporary file and `os.replace`,
so parallel workers and interrupted runs never leave half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowcheck.version import __version__


def _not_json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(
        f"a result description holds {type(value).__name__} {value!r:.80}, which is not JSON: a cache key must be "
        "built from JSON values (str, number, bool, None, list, dict) so that equal keys mean equal parameters"
    )


def cache_key(description: dict[str, Any]) -> str:
    """The content key of a result description (order-independent). Raises TypeError on a value that is not JSON
    (its text form could make two different descriptions share a key: numpy abbreviates long arrays)."""
    payload = json.dumps({**description, "flowcheck": __version__}, sort_keys=True, default=_not_json)
    return hashlib.sha256(payload.encode()).hexdigest()


class ResultCache:
    """Results by key, grouped by kind (e.g. ``sweep``, ``pruning``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.json"

    def get(self, kind: str, key: str) -> dict | None:
        path = self.path(kind, key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            return None  # a damaged entry is recomputed

    def put(self, kind: str, key: str, value: dict) -> None:
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)

    def entries(self, kind: str | None = None) -> Iterator[tuple[str, str, Path]]:
        """(kind, key, path) of every stored result."""
        kinds = (
            [kind] if kind else sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.exists() else []
        )
        for k in kinds:
            for path in sorted((self.root / k).glob("*/*.json")):
                yield k, path.stem, path


def merge_caches(sources: list[Path], target: Path) -> tuple[int, int]:
    """Copy every result of `sources` into `target` that it lacks; returns (copied, already present)."""
    into = ResultCache(target)
    copied = present = 0
    for source in sources:
        if not Path(source).is_dir():
            raise FileNotFoundError(f"cache directory {source} does not exist")
        for kind, key, path in ResultCache(source).entries():
            destination = into.path(kind, key)
            if destination.exists():
                present += 1
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            tmp = destination.with_name(f"{destination.name}.{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, destination)
            copied += 1
    return copied, present
