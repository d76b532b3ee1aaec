"""Connections that send no complete request head in time are closed (slowloris).

uvicorn's keep-alive timer starts only after a first response, and any byte received
cancels it, so a connection that sends nothing, or a request line and headers a byte at a
time, would stay open for ever and hold one of the server's sockets. The protocol class
here gives every connection a deadline for its request head: ``seconds`` after the
connection opens, and again after each response completes. The deadline is not moved by
data that arrives, only met by a complete head (h11's ``Request`` event); the body is
then paced by :class:`~vultus.server.limits.BodyGuard`.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["header_timeout_protocol"]


class _HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, with the head deadline of this module's docstring."""

    #: Seconds a connection has for each request head; set by :func:`header_timeout_protocol`.
    header_timeout: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a complete request head arrived: the deadline is met
            self._cancel_head_deadline()

    def on_response_complete(self) -> None:
        # Armed first: the parent may go straight on to a pipelined request already
        # received, whose head then meets this deadline at once (handle_events above).
        self._arm_head_deadline()
        super().on_response_complete()

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_too_late)

    def _cancel_head_deadline(self) -> None:
        if getattr(self, "_head_deadline", None) is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its body and response have their own limits
        try:
            self.conn.send(h11.ConnectionClosed())
        except h11.LocalProtocolError:
            pass  # h11 is mid-message on our side; the socket is closed all the same
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """An h11 protocol class for ``uvicorn.run(http=...)`` that closes a connection whose
    request head is not complete within ``seconds`` of its opening or of the last response."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadline,), {"header_timeout": float(seconds)})
