"""Who may use the agent's admin routes: one check shared by every admin API, with the admin
token as its first kind of credential and room for others (a console's login session).

The token is the value of the environment variable named by `degradation.admin_token_env`,
compared in constant time with the bytes of an `Authorization: Bearer` header; it applies
whether or not the degradation engine is enabled. A token is shared by whoever holds it, so a
request made with it may name its actor; a credential that names its holder (a login session)
sets the actor itself.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import re
from collections.abc import Callable

from aiohttp import web

from agent.server.plumbing import authorization, bad_request, secret_bytes

DEFAULT_ACTOR = "api"
"""The actor of a request made with the admin token that names none (as the degradation API)."""

ACTOR = re.compile(r"[\w.@:+-]{1,100}")
"""An actor name: 1-100 letters, digits or `. _ @ : + -` (matched whole, with fullmatch)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """An authorized caller: its actor, and whether the credential is shared (the admin token)
    so that a request may say which operator it acts for."""

    actor: str
    shared: bool = False

    def acting_as(self, named: str | None) -> str:
        """The actor to record for a request that names `named` (or None): the name when the
        credential is shared, else the credential's own holder (400 when they differ)."""
        if named is None or named == self.actor:
            return self.actor
        if not self.shared:
            raise bad_request(f"actor is set by the credential ({self.actor}); leave it out")
        if not ACTOR.fullmatch(named):  # fullmatch: `$` would let a trailing newline through
            raise bad_request("actor must be 1-100 letters, digits or . _ @ : + -")
        return named


Authenticator = Callable[[web.Request], Principal | None]
"""A kind of credential: the principal a request's credential authorizes, or None when the
request carries none of this kind (or a wrong one). It must not raise for what a request holds."""


class AdminAuth:
    """The admin credential check: the admin token first, then each registered authenticator,
    in the order they were added; the first that recognizes the request decides."""

    def __init__(self, token_env: str | None) -> None:
        self._token = secret_bytes(token_env)
        self._authenticators: list[Authenticator] = [self._bearer]

    @property
    def has_token(self) -> bool:
        """Whether an admin token is configured (without one, nobody is ever authorized)."""
        return self._token is not None

    def token_matches(self, sent: bytes) -> bool:
        """Whether `sent` is the admin token (a console's login), compared in constant time."""
        return self._token is not None and hmac.compare_digest(sent, self._token)

    def register(self, authenticator: Authenticator) -> None:
        """Accept another kind of credential (tried after those registered before)."""
        self._authenticators.append(authenticator)

    def principal(self, request: web.Request) -> Principal | None:
        """Who `request` is authorized as, or None."""
        for authenticator in self._authenticators:
            found = authenticator(request)
            if found is not None:
                return found
        return None

    def actor(self, request: web.Request) -> str | None:
        """The operator (actor) `request` is authorized as, or None when it is not."""
        found = self.principal(request)
        return None if found is None else found.actor

    def require(self, request: web.Request) -> str:
        """The actor of `request`; a JSON 401 (nothing else said) when it is not authorized."""
        return self.authorize(request).actor

    def authorize(self, request: web.Request) -> Principal:
        """The principal of `request`; a JSON 401 (nothing else said) when it has none."""
        found = self.principal(request)
        if found is None:
            detail = "admin API writes need degradation.admin_token_env and its Bearer token"
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": detail}),
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="vigil-admin"'},
            )
        return found

    def _bearer(self, request: web.Request) -> Principal | None:
        if self._token is None:
            return None
        scheme, token = authorization(request.headers)
        if scheme == b"bearer" and self.token_matches(token):
            return Principal(DEFAULT_ACTOR, shared=True)
        return None
