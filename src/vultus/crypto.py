"""Keys of a deployment: AES-GCM encryption at rest and Ed25519 signatures for receipts.

The key file (``DATA/keys.json`` unless ``VULTUS_KEY_FILE`` names another; keep it outside
the data directory and a stolen data directory reveals nothing) holds:

- encryption keys by id, one of them current. Every ciphertext starts with the id of the
  key that made it, so after a rotation, or a rotation cut short, old and new ciphertexts
  are both readable until everything is re-encrypted and the old key dropped;
- the Ed25519 key that signs receipts. Its public half is printed in each receipt, so a
  person can check a receipt without access to the deployment.

GDPR Art. 32 and ISO/IEC 24745 ask that biometric templates be protected at rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataDirError, KeyFileError, TamperedDataError

__all__ = ["Keyring", "MAGIC", "verify_signature"]

#: Every ciphertext starts with these bytes, then an 8-byte key id and a 12-byte nonce.
MAGIC = b"VX1"
_KEY_ID_LEN = 8
_NONCE_LEN = 12


@dataclass
class Keyring:
    """The deployment's encryption keys and receipt-signing key, loaded from one file."""

    path: Path
    keys: dict[str, bytes] = field(default_factory=dict)
    current: str = ""
    signing_seed: bytes = b""

    # -- loading and saving --------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> "Keyring":
        """Load the key file, creating it with fresh keys when it does not exist."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise KeyFileError(f"The key file {path} does not exist.")
            ring = cls(path=path)
            ring.current = ring._new_key()
            ring.signing_seed = secrets.token_bytes(32)
            ring.save()
            return ring
        try:
            raw = json.loads(path.read_text())
            ring = cls(
                path=path,
                keys={k: base64.b64decode(v) for k, v in raw["keys"].items()},
                current=raw["current"],
                signing_seed=base64.b64decode(raw["signing_key"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(
                f"The key file {path} cannot be read ({exc}). Restore it from your backup: without "
                "it the photos and templates in the data directory cannot be decrypted."
            ) from exc
        if ring.current not in ring.keys or any(len(k) != 32 for k in ring.keys.values()):
            raise KeyFileError(f"The key file {path} is damaged (no valid current key); restore it from backup.")
        if len(ring.signing_seed) != 32:
            raise KeyFileError(
                f"The key file {path} is damaged: its signing key is {len(ring.signing_seed)} bytes, not 32 "
                "(an Ed25519 seed). Restore the key file from your backup."
            )
        return ring

    @property
    def rotation_pending(self) -> bool:
        """Whether a rotation was started and not finished (an old key is still held)."""
        return len(self.keys) > 1

    def save(self) -> None:
        """Write the key file atomically, readable by its owner only."""
        from .store.blobs import write_atomic  # blobs imports nothing from here

        data = {
            "version": 1,
            "current": self.current,
            "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
            "signing_key": base64.b64encode(self.signing_seed).decode(),
        }
        try:
            write_atomic(self.path, json.dumps(data, indent=2).encode(), mode=0o600)
        except OSError as exc:
            raise DataDirError(f"Cannot write the key file {self.path}: {exc.strerror}.") from exc

    def _new_key(self) -> str:
        key_id = secrets.token_hex(_KEY_ID_LEN // 2)
        self.keys[key_id] = secrets.token_bytes(32)
        return key_id

    # -- encryption ----------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        """AES-256-GCM under the current key; ``context`` is bound in as associated data."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(_NONCE_LEN)
        key_id = self.current.encode()
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext, MAGIC + key_id + context)
        return MAGIC + key_id + nonce + sealed

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        """Open a ciphertext made by :meth:`encrypt` with the same ``context``."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key_id = self.key_id_of(blob)
        key = self.keys.get(key_id)
        if key is None:
            raise KeyFileError(
                f"Data was encrypted with key {key_id}, which is not in {self.path}. Use the key "
                "file this data directory was created with."
            )
        start = len(MAGIC) + _KEY_ID_LEN
        nonce, sealed = blob[start : start + _NONCE_LEN], blob[start + _NONCE_LEN :]
        try:
            return AESGCM(key).decrypt(nonce, sealed, MAGIC + key_id.encode() + context)
        except InvalidTag:
            raise TamperedDataError(
                "Stored data failed its integrity check: it was altered, or it belongs elsewhere."
            ) from None

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _KEY_ID_LEN + _NONCE_LEN + 16:
            raise TamperedDataError("Stored data is not in Vultus's encrypted format: it was altered or replaced.")
        return blob[len(MAGIC) : len(MAGIC) + _KEY_ID_LEN].decode("ascii", "replace")

    def start_rotation(self) -> tuple[str, str]:
        """Add a new current key (the old one stays until :meth:`finish_rotation`)."""
        old = self.current
        self.current = self._new_key()
        self.save()
        return old, self.current

    def finish_rotation(self) -> list[str]:
        """Drop every key but the current one; return the ids dropped."""
        dropped = [k for k in self.keys if k != self.current]
        for key_id in dropped:
            del self.keys[key_id]
        self.save()
        return dropped

    # -- signatures ----------------------------------------------------------------------

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.signing_seed).sign(message)

    @property
    def public_key(self) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        private = Ed25519PrivateKey.from_private_bytes(self.signing_seed)
        return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def mac(self, message: bytes) -> str:
        """A keyed hash (HMAC-SHA256 under a key derived from the signing key)."""
        import hmac

        key = hashlib.sha256(b"vultus-mac" + self.signing_seed).digest()
        return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True

