"""Who is asking and what they may do: the engine behind a request, its account, role checks, API errors.

Used by the app, its routes, its web views and the middleware that refuses requests
before their body is read; it imports none of them.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import Depends, Request

from ..engine import Engine
from ..store.accounts import Account, Role

__all__ = ["ApiError", "Unauthorized", "account_for", "as_dict", "current_account", "engine_of", "forbidden_message",
           "require"]


class ApiError(Exception):
    """A refusal with its HTTP status, a stable code and a message for the user."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Unauthorized(ApiError):
    """No token, or one of no active account (401)."""

    def __init__(self, code: str, message: str):
        super().__init__(401, code, message)


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def account_for(engine: Engine, authorization: str) -> Account:
    """The active account whose token the ``Authorization`` header carries (:class:`Unauthorized` if none)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "unauthenticated",
            "Send your token as 'Authorization: Bearer TOKEN'; an administrator creates accounts with "
            "`vultus user add NAME --role ROLE`.",
        )
    account = engine.authenticate(token.strip())
    if account is None:
        raise Unauthorized("invalid_token", "The token is not valid or its account is disabled; ask an administrator.")
    return account


def current_account(request: Request) -> Account:
    """The account whose bearer token the request carries (401 if none or wrong)."""
    return account_for(engine_of(request), request.headers.get("authorization", ""))


def forbidden_message(account: Account, roles: tuple[Role, ...]) -> str:
    """What a 403 says: the roles a route needs and the account's own."""
    allowed = " or ".join(r.value for r in roles)
    return f"This needs the {allowed} role; your account {account.name!r} is {account.role.value}."


def require(*roles: Role) -> Callable[..., Account]:
    """A dependency that lets through only accounts with one of ``roles`` (403 otherwise)."""

    def check(account: Account = Depends(current_account)) -> Account:
        if account.role not in roles:
            raise ApiError(403, "forbidden", forbidden_message(account, roles))
        return account

    check.__name__ = f"require_{'_'.join(r.value for r in roles)}"
    check.roles = roles  # type: ignore[attr-defined] - read by the test of every route's roles
    return check


def as_dict(value: Any) -> Any:
    """Dataclass results as plain JSON-able dicts."""
    return value.__dict__.copy() if hasattr(value, "__dict__") else value
