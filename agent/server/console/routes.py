"""The console's routes: the page and its assets under `/ui/`, and its session API under
`/ui/api/` (log in with the admin token, log out, who am I).

Every response here carries a strict Content-Security-Policy (scripts, styles and requests from
this origin only, no inline code, no framing) and headers that keep it out of caches, referrers
and other sites' frames. Changes themselves go through the agent's API (`/api/v1/...`), which
accepts a console session in place of the token through `Console.operator`: the session cookie
plus the session's CSRF token in `X-CSRF-Token`, from this origin.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.server.auth import AdminAuth, Principal
from agent.server.console.sessions import OPERATOR, Session, Sessions, csrf_matches
from agent.server.plumbing import read_json, wire

COOKIE = "vigil_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


class LoginRequest(BaseModel):
    """Body of `POST /ui/api/login`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    operator: str = Field(pattern=OPERATOR.pattern)
    token: str = Field(min_length=1, max_length=4096)


def _static(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("static", name).read_bytes()


def _json(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers=SECURITY_HEADERS)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def same_origin(request: web.Request) -> bool:
    """Whether the request's `Origin`, when a browser sent one, is this agent's own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


class Console:
    """The console's routes over `sessions`, logging in with the admin token of `auth` (without
    one, nobody can log in and the console is read-only). Its sessions are registered with
    `auth` in turn, as the other kind of admin credential."""

    def __init__(self, auth: AdminAuth, sessions: Sessions | None = None) -> None:
        self.auth = auth
        self.sessions = sessions or Sessions()
        auth.register(self.principal)
        self._page = _static("index.html")
        self._assets = {name: _static(name) for name in ASSETS}

    def register(self, app: web.Application) -> None:
        """Add the routes to `app`."""
        r = app.router
        r.add_get("/ui", self.redirect)
        r.add_get("/ui/", self.page)
        r.add_get("/ui/static/{name}", self.asset)
        r.add_get("/ui/api/session", self.session)
        r.add_post("/ui/api/login", self.login)
        r.add_post("/ui/api/logout", self.logout)

    def session_of(self, request: web.Request) -> Session | None:
        """The live session the request's cookie names, or None."""
        return self.sessions.get(request.cookies.get(COOKIE))

    def principal(self, request: web.Request) -> Principal | None:
        """The admin check's view of `operator`: the operator as the actor of the change,
        which a request cannot name otherwise (see `auth.Principal.acting_as`)."""
        operator = self.operator(request)
        return None if operator is None else Principal(operator, shared=False)

    def operator(self, request: web.Request) -> str | None:
        """The operator a request acts for, when it comes from a console session allowed to
        change things: a live session, from this origin, and (for anything but a read) with the
        session's CSRF token. None otherwise: the request then needs the admin token."""
        session = self.session_of(request)
        if session is None or not same_origin(request):
            return None
        if request.method not in SAFE_METHODS and not csrf_matches(
            session, request.headers.get(CSRF_HEADER)
        ):
            return None
        return session.operator

    async def redirect(self, request: web.Request) -> web.Response:
        """`/ui` -> `/ui/`."""
        raise web.HTTPPermanentRedirect("/ui/", headers=SECURITY_HEADERS)

    async def page(self, request: web.Request) -> web.Response:
        """The console's one page; the script fills it from the API."""
        return web.Response(
            body=self._page, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
        )

    async def asset(self, request: web.Request) -> web.Response:
        """A script, style sheet or icon of the page (only those shipped with the agent)."""
        name = request.match_info["name"]
        if name not in self._assets:
            return _error(404, "no such asset")
        headers = {**SECURITY_HEADERS, "Content-Type": ASSETS[name]}
        return web.Response(body=self._assets[name], headers=headers)

    async def session(self, request: web.Request) -> web.Response:
        """Who is logged in here, with the CSRF token the page sends with changes (readable by
        this origin's scripts only: nothing here allows another origin to read it)."""
        session = self.session_of(request)
        return _json(
            {
                "operator": session.operator if session else None,
                "csrf": session.csrf if session else None,
                "login_available": self.auth.has_token,
            }
        )

    async def login(self, request: web.Request) -> web.Response:
        """Open a session for an operator who sends the admin token (JSON body, never a URL)."""
        if not same_origin(request):
            return _error(403, "login from another origin refused")
        if not self.auth.has_token:
            return _error(
                403, "this agent has no admin token (degradation.admin_token_env): read-only"
            )
        try:
            body = LoginRequest.model_validate(await read_json(request))
        except web.HTTPException as exc:
            return _error(exc.status, _reason(exc))
        except ValidationError as exc:
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]}) or ["body"]
            # Never echo the values: one of them is the token.
            return _error(400, f"invalid {', '.join(fields)}: operator must be 1-100 letters, "
                          "digits or . _ @ : + -, and a token is required")  # fmt: skip
        if not self.auth.token_matches(wire(body.token)):
            return _error(401, "the token is not this agent's admin token")
        session = self.sessions.open(body.operator)
        response = _json({"operator": session.operator, "csrf": session.csrf})
        response.set_cookie(
            COOKIE, session.id, httponly=True, samesite="Strict", path="/", secure=request.secure
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """End the session (it needs the session's CSRF token, as any change does)."""
        session = self.session_of(request)
        if session is None:
            return _error(401, "not logged in")
        if not same_origin(request) or not csrf_matches(session, request.headers.get(CSRF_HEADER)):
            return _error(403, "logout needs the session's CSRF token, from this origin")
        self.sessions.close(session.id)
        response = _json({"operator": None, "csrf": None})
        response.del_cookie(COOKIE, path="/")
        return response


def _reason(exc: web.HTTPException) -> str:
    try:
        return str(json.loads(exc.text or "{}").get("error", exc.reason))
    except (ValueError, AttributeError):
        return exc.reason
