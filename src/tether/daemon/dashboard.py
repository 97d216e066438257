"""The dashboard's pages and its login (docs/dashboard.md).

``/_tether/dashboard/`` is one static page (``dashboard_static/``: HTML, JS and CSS written by hand,
no build step, nothing from another origin) that reads the same JSON routes as the CLI. A browser
cannot send the bearer token as a header on a page load, so the login page takes the token (typed,
or from the URL's ``#token=`` fragment, which a browser never sends to the server: ``tether
dashboard`` opens that) and POSTs it to ``/_tether/dashboard/login``, which answers with an
HttpOnly, SameSite=Strict cookie holding ``Tokens.session``: an HMAC of the token (a rotation
ends every session), never the token itself.

``gate`` decides a request ``DaemonApp`` refused for its missing or wrong bearer token, so a call
never pays for it: the cookie is accepted for GET requests under ``/_tether/`` only (the dashboard
reads, it never changes anything), the login page and the static files (no data in them) are
open, the page without a session is sent to the login page, and anything else is a 401.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from tether.daemon.requests import read_body
from tether.daemon.tokens import Tokens

PREFIX = "/_tether/dashboard"
LOGIN = f"{PREFIX}/login"
STATIC = Path(__file__).with_name("dashboard_static")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
#: the pages load nothing from another origin, and no other origin may frame them
HEADERS = {
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}

OK, OPEN, TO_LOGIN, DENY = "ok", "open", "login", "deny"


def gate(scope: dict, tokens: Tokens) -> str:
    """What to do with a request that has no valid bearer token (see the module's docstring)."""
    path, method = scope["path"], scope["method"]
    if path.startswith(f"{PREFIX}/static/") and method == "GET":
        return OPEN
    if path in (LOGIN, f"{PREFIX}/logout") and method in ("GET", "POST"):
        return OPEN
    if method != "GET" or not path.startswith("/_tether/"):
        return DENY
    if _session(scope, tokens):
        return OK
    return TO_LOGIN if path in (PREFIX, f"{PREFIX}/") else DENY


def _session(scope: dict, tokens: Tokens) -> bool:
    prefix = tokens.cookie + b"="
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        for part in value.split(b";"):
            part = part.strip()
            if part.startswith(prefix) and hmac.compare_digest(part[len(prefix):], tokens.session):
                return True
    return False


async def to_login(send) -> None:
    """303 to the login page (a browser keeps the URL's fragment across it: ``#token=`` too)."""
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", LOGIN.encode()), (b"content-length", b"0"),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})


_files: dict[str, bytes] = {}


def _file(name: str) -> Response:
    body = _files.get(name)
    if body is None:
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in TYPES or not path.is_file():
            return JSONResponse({"error": "not_found", "message": f"no dashboard file {name[:100]!r}"}, 404)
        body = _files[name] = path.read_bytes()
    return Response(body, media_type=TYPES[Path(name).suffix], headers=HEADERS)


def register(app: FastAPI, tokens: Tokens) -> None:
    """Add the dashboard's routes to ``app``."""

    def cookie(value: str, max_age: int | None = None) -> str:
        age = f"; Max-Age={max_age}" if max_age is not None else ""
        return f"{tokens.cookie.decode()}={value}; Path=/_tether; HttpOnly; SameSite=Strict{age}"

    @app.get(PREFIX, include_in_schema=False)
    async def bare() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    @app.get(f"{PREFIX}/", include_in_schema=False)
    async def page() -> Response:
        return _file("index.html")

    @app.get(f"{PREFIX}/static/{{name}}", include_in_schema=False)
    async def static(name: str) -> Response:
        return _file(name)

    @app.get(LOGIN, include_in_schema=False)
    async def login_page() -> Response:
        return _file("login.html")

    @app.post(LOGIN)
    async def login(request: Request) -> Response:
        """Exchange the token (JSON ``{"token": ...}`` or a form field ``token``) for the session
        cookie: 204, or 401 for a wrong token."""
        raw = bytes(await read_body(request.receive, request.headers.get("content-length")))
        token = ""
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(raw or b"{}")
                token = body.get("token") or "" if isinstance(body, dict) else ""
            except ValueError:
                token = ""
        else:
            token = (parse_qs(raw.decode(errors="replace")).get("token") or [""])[0]
        if not isinstance(token, str) or not hmac.compare_digest(
                f"Bearer {token.strip()}".encode(), tokens.expected):
            return JSONResponse({"error": "unauthorized", "message": "wrong token for cluster "
                                 f"{tokens.cluster!r} (`tether dashboard {tokens.cluster}` opens the "
                                 "dashboard logged in)"}, 401, headers={"cache-control": "no-store"})
        return Response(status_code=204, headers={"set-cookie": cookie(tokens.session.decode()),
                                                  "cache-control": "no-store"})

    @app.post(f"{PREFIX}/logout")
    async def logout() -> Response:
        """Clear the session cookie (open to anyone: forgetting a session harms nobody)."""
        return Response(status_code=204, headers={"set-cookie": cookie("", 0)})
