"""redis-py's exceptions told apart, in our terms: each failure that a setting fixes gets a
message naming that setting and the URL form to use.

The seed's own troubleshooting story is the reason: a Redis with ``requirepass`` answers the
first command with NOAUTH (or, for RESP3's HELLO, "HELLO must be called with the client already
authenticated"), which redis-py raises as a *connection* error. Reported as "could not be
reached", it sends people to check a server that answered. Used by the store (and so by
``tail`` and ``doctor``, which read through it).
"""

from __future__ import annotations

import ssl

from redis.exceptions import AuthenticationError, AuthorizationError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinatord import backend_url
from coordinatord.errors import BackendError, BackendUnavailableError

URL_SETTING = "backend.url (REDIS_URL, or [backend] url in the config file)"


def explain(exc: BaseException, name: str, url: str) -> BackendError | None:
    """The error to raise for ``exc`` from backend ``name`` (reached at ``url``, which may hold a
    password: only placeholder forms of it are shown), or None when the generic message fits."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, AuthenticationError):
        if "no password is set" in lowered or "without any password configured" in lowered:
            return BackendUnavailableError(
                f"backend {name} was reached but has no password set, and the URL gives one: "
                f"remove it from {URL_SETTING}, e.g. {backend_url.without_credentials(url)}",
                kind="nopass",
            )
        if backend_url.has_password(url):
            return BackendUnavailableError(
                f"backend {name} was reached but refused the password (WRONGPASS: {text.rstrip('.')}): "
                f"correct it in {URL_SETTING}, as {backend_url.with_credentials(url)} "
                f"or {backend_url.with_credentials(url, user='USER')} for an ACL user",
                kind="wrongpass",
            )
        return BackendUnavailableError(
            f"backend {name} was reached but needs a password (NOAUTH): give it in {URL_SETTING}, "
            f"as {backend_url.with_credentials(url)} "
            f"(or {backend_url.with_credentials(url, user='USER')} for an ACL user)",
            kind="noauth",
        )
    if isinstance(exc, AuthorizationError) or lowered.startswith("noperm"):
        return BackendUnavailableError(
            f"backend {name} refused a command for lack of permission ({text}): the ACL user "
            "in backend.url needs read/write access to the coord:* keys and to EVAL, EVALSHA and "
            "SCRIPT (e.g. ACL SETUSER <user> on ~coord:* +@all)",
            kind="noperm",
        )
    if "db index" in lowered:  # a ResponseError over TCP, a ConnectionError over a Unix socket
        number = backend_url.database(url) if backend_url.problem(url) is None else "?"
        return BackendUnavailableError(
            f"backend {name} has no database {number} ({text}): choose a lower one in "
            f"{URL_SETTING}, e.g. {backend_url.mask(backend_url.with_database(url, 0))}; the "
            "server's `databases` setting (16 by default) bounds the number",
            kind="no_such_db",
        )
    if _is_tls_failure(exc):
        return BackendUnavailableError(
            f"backend {name}: the TLS handshake failed ({text}); rediss:// is for a TLS port and "
            "redis:// for a plain one, and a private CA's certificate goes in backend.tls_ca_file",
            kind="tls",
        )
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return None  # the caller's "did not answer within" names the timeout setting
    if _caused_by(exc, ConnectionRefusedError) or "connection refused" in lowered:
        return BackendUnavailableError(
            f"backend {name} could not be reached: {text} (nothing listens there: is the server "
            "running, and are host and port in backend.url right?)",
            kind="refused",
        )
    return None


def timeout_hint(url: str) -> str:
    """What to add to "did not answer within" for ``url``: a TLS client talking to a plain
    port waits for a handshake that never comes, which looks like a timeout and nothing else."""
    if url.startswith("rediss://"):
        return (
            "; with rediss://, a port that speaks plain Redis never finishes the TLS handshake: "
            "use redis:// for it"
        )
    return ""


def _is_tls_failure(exc: BaseException) -> bool:
    return _caused_by(exc, ssl.SSLError) or "[SSL" in str(exc) or "SSL:" in str(exc)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or what it wraps (redis-py wraps socket and ssl errors) is a ``kind``."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
