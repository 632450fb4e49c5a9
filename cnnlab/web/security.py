"""What keeps other web pages and slow or oversized clients from driving the lab.

A page on any site can make a browser send requests to ``127.0.0.1``; with DNS rebinding it
can even read the answers, under its own host name. So the lab:

- answers only requests whose ``Host`` is one of the names it was started for (the loopback
  names and ``--host``), whatever the port;
- accepts a state-changing request (POST, PUT, PATCH, DELETE) only when its ``Origin``, if
  any, is the lab itself, when the browser does not label it cross-site, and when its body type
  is not one a plain HTML form can send (a form post or a ``no-cors`` fetch carries no
  preflight, so it must be refused by type);
- asks for its token on every ``/api`` route (401 without it, 403 with a wrong one), as
  Jupyter does: another user of the same machine can reach ``127.0.0.1`` too. The URL that
  ``cnnlab serve`` prints carries the token; that first visit sets an HttpOnly, SameSite=Strict
  cookie and is sent on to the clean URL, and the page's own requests carry the cookie. A
  script may send ``Authorization: Bearer <token>`` (or ``?token=``) instead;
- marks every answer ``X-Content-Type-Options: nosniff``;
- bounds the request head in bytes and in time, and the body in time
  (``GuardedHttpToolsProtocol``): uvicorn has no limit on any of them, so one client could
  hold connections open for ever (200 slow bodies filled the lab's connections) or make it
  buffer an endless header.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The body types an HTML form (or a fetch without a CORS preflight) can send.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
MAX_HEAD_BYTES = 16 * 1024  # request line plus headers; the page's own are under 1 KB
HEAD_TIMEOUT_S = 10.0  # from connection (or the previous answer) to the end of the next head
BODY_TIMEOUT_S = 30.0  # from the end of a head to the end of its body (2 MB at 70 KB/s)


def host_name(value: str) -> str:
    """The host of a ``Host`` header or URL authority, lower case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def new_token() -> str:
    """A random token for a lab: 32 bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def _same_token(given: str, token: str) -> bool:
    """Compared in constant time, so the answer's timing says nothing of the token."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def cookie_name(scope: Scope) -> str:
    """The lab's cookie, one per port: cookies ignore ports, so two labs on one machine
    would otherwise overwrite each other's."""
    server = scope.get("server") or ("", 0)
    return f"cnnlab-token-{server[1] or 0}"


def allowed_hosts(extra: Iterable[str] = ()) -> frozenset[str]:
    """The loopback names plus the names the server was started for (``--host``)."""
    return frozenset(host_name(h) for h in (*LOOPBACK_HOSTS, *extra) if h)


class RequestGuard:
    """ASGI middleware: refuse foreign Host names, requests without the lab's ``token`` and
    cross-site state changes; add nosniff."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], token: str) -> None:
        self.app = app
        self.hosts = hosts
        self.token = token

    def given_token(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """The token a request carries: ``Authorization: Bearer``, ``?token=`` or the cookie."""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if query:
            return query[-1]
        name = cookie_name(scope)
        for part in headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name and value:
                return value
        return None

    def token_refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        given = self.given_token(scope, headers)
        if given is None:
            return 401, (
                "this lab needs its token: open the address that cnnlab serve printed "
                "(it ends in ?token=...)"
            )
        if not _same_token(given, self.token):
            return 403, (
                "wrong token for this lab: open the address that cnnlab serve printed "
                "(it ends in ?token=...)"
            )
        return None

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, one-line reason) when the request must be refused, else None."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            return 421, (
                f"this lab answers only for {', '.join(sorted(self.hosts))}, not for host "
                f"{host_name(host)[:60]!r}; open it by one of those names"
            )
        path = scope.get("path", "")
        if path.startswith("/api") or (path == "/" and b"token=" in scope.get("query_string", b"")):
            refused = self.token_refusal(scope, headers)
            if refused is not None:
                return refused
        if scope["method"] not in STATE_CHANGING:
            return None
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if origin == "null" or parts.netloc.lower() != host.strip().lower():
                return 403, (
                    f"refused: a page from {origin[:80]!r} may not change the lab; use the lab's "
                    "own page"
                )
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return 403, "refused: a cross-site request may not change the lab"
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if not kind or kind in FORM_TYPES:
            return 415, (
                f"a {scope['method']} needs a JSON or image body with its Content-Type, got "
                f"{kind or 'none'!r}; send Content-Type: application/json"
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            await send_json(send, *refused)
            return
        if scope["path"] == "/" and b"token=" in scope.get("query_string", b""):
            await self.welcome(scope, send)
            return

        async def nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), NOSNIFF]
            await send(message)

        try:
            await self.app(scope, receive, nosniff)
        except ClientDisconnect:
            return  # the client left before its body was in: nobody to answer, nothing to log

    async def welcome(self, scope: Scope, send: Send) -> None:
        """The first visit with the right token: set the cookie and go on to the clean URL
        (so the token leaves the address bar and the browser's history)."""
        cookie = (f"{cookie_name(scope)}={self.token}; Path=/; HttpOnly; SameSite=Strict").encode()
        headers = [(b"location", b"/"), (b"set-cookie", cookie), (b"cache-control", b"no-store")]
        headers += [(b"content-length", b"0"), NOSNIFF]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


NOSNIFF = (b"x-content-type-options", b"nosniff")


async def send_json(send: Send, status: int, detail: str) -> None:
    """Answer with ``{"detail": detail}`` from a middleware, before the app sees the request."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        NOSNIFF,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# An absolute path in a message (``/home/x/runs/a/model.npz``, or quoted, spaces and all):
# only its last part is shown.
_QUOTED_PATH = re.compile(r"""(['"])/(?:[^'"\n]*/)?([^'"/\n]*)\1""")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s'\"/()]+)+/([^\s'\"/()]+)")


def without_paths(message: str) -> str:
    """``message`` with every absolute path shortened to its file name: the server's folders
    are nobody else's business."""
    return _ABSOLUTE_PATH.sub(r"\1", _QUOTED_PATH.sub(r"\1\2\1", message))


class _HeadTooLargeError(Exception):
    """Raised from a parser callback; httptools turns it into a parser error."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head: ``head_bytes_limit``
    bytes (a 431 beyond, whether the head arrives whole or bit by bit) and ``head_timeout_s``
    seconds from connecting, or from the previous answer, to its end; and on the body:
    ``body_timeout_s`` seconds from the end of the head to its end (either way, too slow and
    the connection is closed)."""

    head_bytes_limit = MAX_HEAD_BYTES
    head_timeout_s = HEAD_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # bytes received while a head is incomplete
        self._head_parsed = 0  # bytes of the current head the parser has handed over
        self._in_head = True
        self._head_too_large = False
        self._timer: asyncio.TimerHandle | None = None  # the head's or the body's deadline

    def _arm_head_timer(self) -> None:
        self._in_head, self._head_bytes = True, 0
        self._cancel_timer()
        self._timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_too_slow(self) -> None:
        self._timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def _grow_head(self, size: int) -> None:
        self._head_parsed += size
        if self._head_parsed > self.head_bytes_limit:
            self._head_too_large = True
            raise _HeadTooLargeError

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:  # a head still incomplete: count what is buffered for it
            self._head_bytes += len(data)
        super().data_received(data)
        too_long = self._in_head and self._head_bytes > self.head_bytes_limit
        if too_long and not self.transport.is_closing():
            self._head_too_large = True
            self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        self._cancel_timer()
        body = json.dumps(
            {"detail": f"request headers over the limit of {self.head_bytes_limit} bytes"}
        ).encode()
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        self.transport.write(head + body)
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_parsed = 0

    def on_url(self, url: bytes) -> None:
        self._grow_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_timer()
        self._timer = self.loop.call_later(self.body_timeout_s, self._body_too_slow)
        super().on_headers_complete()

    def _body_too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_complete(self) -> None:
        self._cancel_timer()  # the body is in: what follows is the answer's time
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a pipelined request's head is already in
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm_head_timer()
