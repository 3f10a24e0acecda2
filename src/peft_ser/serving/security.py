"""Who may talk to the server, and what every answer tells a browser.

Three ASGI middlewares, wrapped around the app in this order (outermost first):

* `SecurityHeaders`: every response, refusals included, carries a Content-Security-Policy of
  this origin only, ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff`` and
  ``Referrer-Policy: no-referrer``. The page loads nothing from elsewhere.
* `HostAllowList`: a request whose ``Host`` is not an allowed name is refused (400). A page on
  another site that resolves its own name to 127.0.0.1 (DNS rebinding) reaches a server on
  localhost with that name in ``Host``, so it is refused without any key.
* `ApiKeyGate`: with a key set, every route but the bare liveness probe ``/livez`` needs it, in
  the ``X-API-Key`` header or as the password of HTTP Basic authentication (which a browser
  asks for itself, so the page works behind a key).

They read the settings through a function, so `serve` can allow the address it binds to after
the app is made.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peft_ser.serving.limits import send_refusal
from peft_ser.serving.settings import API_KEY_ENV, LOCAL_HOSTS, ServeSettings

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
LIVENESS_PATH = "/livez"
"""The one route that needs no key; it answers ``{"status": "ok"}`` and nothing else."""
ANY_HOST = "*"
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", ""})

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

SettingsSource = Callable[[], ServeSettings]


class SecurityHeaders:
    """ASGI middleware: `SECURITY_HEADERS` on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


class HostAllowList:
    """ASGI middleware: only requests whose ``Host`` names an allowed host (400 otherwise)."""

    def __init__(self, app: ASGIApp, settings: SettingsSource) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self._problem(scope)
            if problem is not None:
                await send_refusal(send, 400, problem)
                return
        elif scope["type"] == "websocket":
            problem = self._problem(scope) or self._foreign_origin(scope)
            if problem is not None:
                await refuse_websocket(send)
                return
        await self.app(scope, receive, send)

    def _problem(self, scope: Scope) -> str | None:
        given = Headers(scope=scope).get("host")
        if given is None:
            return "the request has no Host header"
        if not host_allowed(given, self.settings().allowed_hosts):
            return _host_refused(given)
        return None

    def _foreign_origin(self, scope: Scope) -> str | None:
        """A browser opens WebSockets to any site (no same-origin rule applies), so a page
        elsewhere could stream through a visitor's browser: its ``Origin`` must be a host this
        server answers to. Clients other than browsers send no ``Origin``."""
        origin = Headers(scope=scope).get("origin")
        if origin is None:
            return None
        host = urlsplit(origin).netloc
        if host and host_allowed(host, self.settings().allowed_hosts):
            return None
        return f"origin {origin!r} is not allowed"


class ApiKeyGate:
    """ASGI middleware: with a key set, every route but `LIVENESS_PATH` needs it (401)."""

    def __init__(self, app: ASGIApp, settings: SettingsSource) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self._admits(scope):
            await refuse_websocket(send)
            return
        if scope["type"] == "http" and not self._admits(scope):
            message = (
                f"missing or wrong API key: send it in the {API_KEY_HEADER} header "
                "(or as the password of HTTP Basic authentication)"
            )
            challenge = {"WWW-Authenticate": 'Basic realm="peft-ser", charset="UTF-8"'}
            await send_refusal(send, 401, message, challenge)
            return
        await self.app(scope, receive, send)

    def _admits(self, scope: Scope) -> bool:
        key = self.settings().api_key
        if key is None or scope["path"] == LIVENESS_PATH:
            return True
        return key_matches(given_key(Headers(scope=scope)), key)


def given_key(headers: Headers) -> str | None:
    """The key a request sends: its ``X-API-Key`` header, else its HTTP Basic password."""
    if API_KEY_HEADER in headers:
        return headers[API_KEY_HEADER]
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def key_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is the API key, compared in constant time (no timing oracle)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def host_name(value: str) -> str:
    """The name of a ``Host`` header or an address: no port, no brackets, lower case, no
    trailing dot (``[::1]:8000`` → ``::1``, ``LocalHost.:80`` → ``localhost``)."""
    value = value.strip().lower()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def host_allowed(given: str, allowed: tuple[str, ...]) -> bool:
    names = {host_name(name) for name in allowed}
    return ANY_HOST in names or host_name(given) in names


def _host_refused(given: str) -> str:
    name = host_name(given)
    shown = repr(name if len(name) <= 80 else name[:80] + "...")
    return (
        f"Host {shown} is not a name this server answers to; if it is this server's, "
        f"start it with --allowed-host {name[:80] or 'NAME'}"
    )


def is_loopback(address: str) -> bool:
    name = host_name(address)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def listening_settings(settings: ServeSettings, address: str) -> ServeSettings:
    """``settings`` for a server bound to ``address``: a specific address is allowed as a
    Host; a warning is logged when the server is reachable beyond this machine without a key,
    or bound to every address with only local Host names allowed."""
    if address not in WILDCARD_ADDRESSES and not host_allowed(address, settings.allowed_hosts):
        settings = replace(settings, allowed_hosts=(*settings.allowed_hosts, host_name(address)))
    if not is_loopback(address) and settings.api_key is None:
        log.warning(
            "listening on %s without an API key: anyone who can reach this port can use the "
            "models; set --api-key or %s",
            address or "every address",
            API_KEY_ENV,
        )
    local = {host_name(name) for name in LOCAL_HOSTS}
    if address in WILDCARD_ADDRESSES and {host_name(h) for h in settings.allowed_hosts} <= local:
        log.warning(
            "listening on every address, but only requests to %s are answered: add "
            "--allowed-host NAME for each name or address clients use",
            ", ".join(LOCAL_HOSTS),
        )
    return settings


async def refuse_websocket(send: Send) -> None:
    """Refuse a WebSocket before it is accepted: the client's handshake fails with 403."""
    await send({"type": "websocket.close", "code": 1008})
