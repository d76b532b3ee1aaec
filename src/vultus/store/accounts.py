"""User accounts and their roles; tokens are stored as SHA-256 hashes only."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..errors import AccountError, UnknownAccountError
from .schema import users
from .session import Session

__all__ = ["Role", "Account", "Accounts", "MIN_PASSWORD"]

MIN_PASSWORD = 12
_SCRYPT_N = 2**14


class Role(StrEnum):
    """What an account may do. Roles do not nest: an auditor cannot search."""

    ADMIN = "admin"  # users, sources, settings, purge
    INVESTIGATOR = "investigator"  # ingest, search
    DPO = "dpo"  # requests: access, erasure, objection, restriction
    AUDITOR = "auditor"  # audit log and receipts, read only


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: Role
    created_at: str
    disabled_at: str | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Creates, lists, disables and authenticates accounts."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, name: str, role: str, *, at: str) -> tuple[Account, str]:
        """Create an account; return it and its token (shown once, never stored)."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", name or ""):
            raise AccountError(f"User name {name!r} is not allowed; use 1 to 64 letters, digits, '.', '_', '@' or '-'.")
        try:
            parsed = Role(role)
        except ValueError:
            raise AccountError(f"Unknown role {role!r}; use one of: {', '.join(r.value for r in Role)}.") from None
        token = "vx_" + secrets.token_urlsafe(32)
        try:
            with self.session.attempt() as conn:
                conn.execute(users.insert().values(name=name, role=parsed.value, token_hash=_hash(token), created_at=at))
        except IntegrityError:
            raise AccountError(f"A user named {name!r} already exists.") from None
        return self.get(name), token

    def get(self, name: str) -> Account:
        with self.session.read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise UnknownAccountError(f"No user is named {name!r}; see `vultus user list`.")
        return Account(row.id, row.name, Role(row.role), row.created_at, row.disabled_at)

    def list(self) -> list[Account]:
        with self.session.read() as conn:
            rows = conn.execute(select(users).order_by(users.c.name)).all()
        return [Account(r.id, r.name, Role(r.role), r.created_at, r.disabled_at) for r in rows]

    def disable(self, name: str, *, at: str) -> None:
        self.get(name)
        with self.session.write() as conn:
            conn.execute(update(users).where(users.c.name == name).values(disabled_at=at))

    def set_password(self, name: str, password: str) -> None:
        """Give an account a password for the web sign-in (stored as a scrypt hash)."""
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"A password needs at least {MIN_PASSWORD} characters.")
        self.get(name)
        salt = secrets.token_bytes(16)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=8, p=1)
        stored = f"scrypt${_SCRYPT_N}$8$1${salt.hex()}${digest.hex()}"
        with self.session.write() as conn:
            conn.execute(update(users).where(users.c.name == name).values(password_hash=stored))

    def authenticate_password(self, name: str, password: str) -> Account | None:
        """The active account ``name`` if ``password`` is its password, else None."""
        with self.session.read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None or row.disabled_at is not None or not row.password_hash or len(password) > 1024:
            return None
        _, n, r, p, salt, digest = row.password_hash.split("$")
        attempt = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
        if not hmac.compare_digest(attempt.hex(), digest):
            return None
        return Account(row.id, row.name, Role(row.role), row.created_at, row.disabled_at)

    def authenticate(self, token: str) -> Account | None:
        """The active account holding ``token``, or None."""
        if not token or len(token) > 200:
            return None
        digest = _hash(token)
        with self.session.read() as conn:
            row = conn.execute(select(users).where(users.c.token_hash == digest)).first()
        if row is None or row.disabled_at is not None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return Account(row.id, row.name, Role(row.role), row.created_at, row.disabled_at)
