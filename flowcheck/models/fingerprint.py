"""Content fingerprints of checkpoint folders: every byte of every file counts.

A fingerprint keys cached results and identifies a checkpoint in the gate's provenance, so two checkpoints that
differ anywhere (one perturbed tensor in the middle of a 10 GB shard) must never share one. Files up to
`SMALL_FILE_BYTES` are hashed on every call. A larger file's SHA-256 is taken, in this order, from:

1. its Hugging Face hub cache blob: a snapshot file is a link to ``blobs/<sha256>`` for LFS files (the name is
   the SHA-256 of the content; huggingface_hub's cache layout), so nothing needs reading;
2. the digest index (``$XDG_CACHE_HOME/flowcheck/file-digests.json``, else ``~/.cache/...``), valid while the file's
   size, modification time and inode are those it was hashed at (git's index works the same way);
3. reading the whole file (about 1 GB/s), then recorded in the index.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

SMALL_FILE_BYTES = 256 * 2**20
_CHUNK = 4 * 2**20
_LFS_BLOB = re.compile(r"[0-9a-f]{64}")


def digest_index_path() -> Path:
    """Where file digests of large files are remembered between runs."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "flowcheck" / "file-digests.json"


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _DigestIndex:
    """The persistent {resolved path: [stamp, sha256]} index; unreadable or unwritable indexes are ignored (the
    file is then simply hashed again)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            loaded = json.loads(path.read_text())
            self.entries: dict[str, list[str]] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def get(self, real: Path) -> str | None:
        entry = self.entries.get(str(real))
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == _stamp(real):
            return entry[1]
        return None

    def put(self, real: Path, stamp: str, sha256: str) -> None:
        self.entries[str(real)] = [stamp, sha256]
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as fh:
                json.dump(self.entries, fh)
            os.replace(fh.name, self.path)
        except OSError:
            pass


def large_file_sha256(path: Path, index: _DigestIndex | None = None) -> str:
    """SHA-256 (hex) of a file's whole content, from its hub blob name, the digest index or by reading it."""
    real = path.resolve()
    if real.parent.name == "blobs" and _LFS_BLOB.fullmatch(real.name):
        return real.name
    index = index if index is not None else _DigestIndex(digest_index_path())
    known = index.get(real)
    if known is not None:
        return known
    stamp = _stamp(real)
    sha256 = _hash_file(real)
    if _stamp(real) == stamp:  # not rewritten while it was read
        index.put(real, stamp, sha256)
    return sha256


def fingerprint_folder(folder: Path, *, small_file_bytes: int = SMALL_FILE_BYTES) -> str:
    """A content fingerprint (24 hex digits) of a checkpoint folder: config, processor files and weights, every
    byte of every file (hidden files excluded). Files up to `small_file_bytes` are hashed as they are read (the
    fingerprint of such folders is unchanged from earlier flowcheck versions); larger ones by their whole
    content's SHA-256 (see the module docstring for how it is found without rereading)."""
    digest = hashlib.sha256()
    index = _DigestIndex(digest_index_path())
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder)}|{size}|".encode())
        if size <= small_file_bytes:
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(2**20), b""):
                    digest.update(chunk)
        else:
            digest.update(f"sha256:{large_file_sha256(path, index)}".encode())
    index.save()
    return digest.hexdigest()[:24]
