"""Fetch benchmarks from the Hugging Face hub into a local cache, in their on-disk layouts.

Annotations are plain files (json / parquet); videos come as zip archives that are unpacked once
into ``<cache>/<dataset>/<layout>``. The downloader is a parameter so the unpacking and caching
logic can be exercised offline.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flowcheck.data.report import DataError

Downloader = Callable[..., str]


_CACHE_ROOT: Path | None = None


def default_cache() -> Path:
    """Where fetched and generated datasets live: the run's ``data_dir`` option (``--flow-data-dir``,
    ``FLOWCHECK_DATA_DIR``) while `cache_root` is active, else ``$FLOWCHECK_DATA_DIR`` or
    ``~/.cache/flowcheck/data``."""
    if _CACHE_ROOT is not None:
        return _CACHE_ROOT
    import os

    return Path(os.environ.get("FLOWCHECK_DATA_DIR") or Path.home() / ".cache" / "flowcheck" / "data")


@contextmanager
def cache_root(path: Path | str | None) -> Iterator[None]:
    """Use `path` as the data cache inside the block (None: keep the default)."""
    global _CACHE_ROOT
    previous = _CACHE_ROOT
    if path is not None:
        _CACHE_ROOT = Path(path).expanduser()
    try:
        yield
    finally:
        _CACHE_ROOT = previous


def _hf_hub_download() -> Downloader:
    from huggingface_hub import hf_hub_download

    return hf_hub_download


def download(repo_id: str, filename: str, *, revision: str | None = None, downloader: Downloader | None = None) -> Path:
    """One file of a hub dataset repo (cached by huggingface_hub); a clear error when offline."""
    fetch = downloader or _hf_hub_download()
    try:
        return Path(fetch(repo_id=repo_id, filename=filename, repo_type="dataset", revision=revision))
    except Exception as err:
        raise DataError(
            f"cannot download {filename} of the hub dataset {repo_id} ({type(err).__name__}: {err}). Download "
            f"it on a connected machine, or give a local root in the dataset's layout (--flow-data NAME=PATH)."
        ) from err


def unpack_videos(archive: Path, target: Path) -> Path:
    """Unpack a video zip into `target` (once); a single top-level folder named like `target` is flattened."""
    marker = target / ".unpacked"
    if marker.exists():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                if member.is_dir() or member.filename.startswith("__MACOSX"):
                    continue
                parts = Path(member.filename).parts
                if ".." in parts or Path(member.filename).is_absolute():
                    raise DataError(f"{archive} holds an unsafe path {member.filename!r}; refusing to unpack it")
                zf.extract(member, staging)
    except zipfile.BadZipFile as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{archive} is not a valid zip archive ({err}); delete it and download again") from None
    entries = [p for p in staging.iterdir()]
    inner = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(inner), str(target))
    shutil.rmtree(staging, ignore_errors=True)
    marker.write_text(str(archive))
    return target
