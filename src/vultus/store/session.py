"""Connections to one SQL database, joined to the transaction the caller has open.

Use cases group writes with ``with store.transaction():`` and never see a connection:
every store method called inside that block runs on the block's connection, so its
changes and their audit entry commit together or not at all. Outside a block, a read
takes a connection of its own and a write its own short transaction.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from sqlalchemy.engine import Connection, Engine

from .dialects import SQLITE, Dialect

__all__ = ["Session"]

#: The open transactions of this thread (or task): (session, connection) pairs, innermost last,
#: so that a block on one store inside a block on another leaves each its own. A context
#: variable, so threads of the server and worker callbacks never share one.
_OPEN: ContextVar["tuple[tuple[Session, Connection], ...]"] = ContextVar("vultus_store_transactions", default=())


class Session:
    """One database's connections, with the transaction of the current context shared.

    ``dialect`` holds what differs between databases (:mod:`vultus.store.dialects`).
    """

    def __init__(self, engine: Engine, dialect: Dialect = SQLITE):
        self.engine = engine
        self.dialect = dialect

    def _joined(self) -> Connection | None:
        for session, conn in reversed(_OPEN.get()):
            if session is self:
                return conn
        return None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction for everything the block does through this session.

        A block inside another one joins it (the outer block commits or rolls back).
        """
        if self._joined() is not None:
            yield
            return
        with self.engine.begin() as conn:
            token = _OPEN.set((*_OPEN.get(), (self, conn)))
            try:
                yield
            finally:
                _OPEN.reset(token)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """The open transaction's connection, else a short transaction of its own."""
        joined = self._joined()
        if joined is not None:
            yield joined
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def attempt(self) -> Iterator[Connection]:
        """Like :meth:`write`, for a statement that may fail on a constraint (a duplicate): when it
        fails inside a joined transaction, that transaction can go on (the dialect's savepoint)."""
        joined = self._joined()
        if joined is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self.dialect.guarded(joined):
            yield joined

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """The open transaction's connection (which sees its own writes), else a fresh one."""
        joined = self._joined()
        if joined is not None:
            yield joined
            return
        with self.engine.connect() as conn:
            yield conn

    def current(self) -> Connection:
        """The open transaction's connection, for steps that only make sense inside one."""
        joined = self._joined()
        if joined is None:
            raise RuntimeError("This store operation must run inside `with store.transaction():`.")
        return joined
