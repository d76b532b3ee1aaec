"""The engine's own copies of photos, face crops and video stills, as files inside the data directory."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

__all__ = ["BlobStore", "Cipher", "write_atomic"]

_KEY = re.compile(r"[a-z]+/[0-9a-f]{2}/[0-9a-f]{64}(_\d+)?\.[a-z0-9]+")


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a part.

    Writes a temporary file in the same folder, fsyncs it, renames it over ``path`` and
    fsyncs the folder, so the rename survives a crash or power loss.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Cipher(Protocol):
    """Authenticated encryption bound to a context (the deployment's :class:`Keyring`)."""

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes: ...

    def decrypt(self, blob: bytes, context: bytes) -> bytes: ...

    def mac(self, message: bytes) -> str: ...


class BlobStore:
    """Encrypted, content-addressed files under ``root``: ``<kind>/<ab>/<sha256>[_<n>].<ext>``.

    Keys derive from the source photo's (or video's) sha256, so writing the same photo twice (after a
    crash, say) lands on the same file instead of leaving a second copy. Each file is
    sealed with ``cipher`` and bound to its key, so files cannot be swapped unnoticed.
    """

    def __init__(self, root: Path, cipher: Cipher):
        self.root = Path(root)
        self.cipher = cipher

    @staticmethod
    def image_key(sha256: str, ext: str) -> str:
        return f"images/{sha256[:2]}/{sha256}.{ext}"

    @staticmethod
    def crop_key(sha256: str, index: int) -> str:
        return f"crops/{sha256[:2]}/{sha256}_{index}.jpg"

    @staticmethod
    def still_key(sha256: str, appearance: int) -> str:
        """The key of the still of appearance number ``appearance`` of the video ``sha256``."""
        return f"stills/{sha256[:2]}/{sha256}_{appearance}.jpg"

    def path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        write_atomic(self.path(key), self.cipher.encrypt(data, b"blob:" + key.encode()))

    def get(self, key: str) -> bytes:
        return self.cipher.decrypt(self.raw(key), b"blob:" + key.encode())

    def raw(self, key: str) -> bytes:
        """The file's sealed bytes as stored."""
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def keys(self) -> list[str]:
        """Every stored key (temporary files from an interrupted write are left out)."""
        if not self.root.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def disk_usage(self) -> int:
        """Bytes used by all blobs."""
        if not self.root.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
