"""Checkpoint fingerprints: every byte of every file counts, large files included."""

import hashlib
import os

from flowcheck.bundled import model_dir
from flowcheck.models.fingerprint import fingerprint_folder, large_file_sha256


def _reference(folder, small):
    """The fingerprint recomputed independently: names, sizes, then content (small) or its SHA-256 (large)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(folder)}|{len(data)}|".encode())
        digest.update(data if len(data) <= small else f"sha256:{hashlib.sha256(data).hexdigest()}".encode())
    return digest.hexdigest()[:24]


def test_bundled_fingerprint_is_the_whole_content(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = model_dir("tiny-video-ft")
    assert fingerprint_folder(folder) == _reference(folder, 256 * 2**20)


def test_a_change_in_the_middle_of_a_large_file_changes_the_fingerprint(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    weights = ckpt / "model.safetensors"
    data = bytearray(os.urandom(3 * 2**20))
    weights.write_bytes(data)
    small = 2**20  # every file above 1 MiB counts as large here
    before = fingerprint_folder(ckpt, small_file_bytes=small)
    assert before == _reference(ckpt, small)
    assert fingerprint_folder(ckpt, small_file_bytes=small) == before  # from the digest index now
    data[len(data) // 2] ^= 0xFF  # one byte in the middle: the first and last MiB are unchanged
    weights.write_bytes(data)
    after = fingerprint_folder(ckpt, small_file_bytes=small)
    assert after != before
    assert after == _reference(ckpt, small)


def test_a_hub_cache_blob_is_known_by_its_name(tmp_path):
    blobs = tmp_path / "models--org--m" / "blobs"
    blobs.mkdir(parents=True)
    content = b"weights" * 1000
    sha = hashlib.sha256(content).hexdigest()
    (blobs / sha).write_bytes(content)
    link = tmp_path / "model.safetensors"
    link.symlink_to(blobs / sha)
    assert large_file_sha256(link) == sha
