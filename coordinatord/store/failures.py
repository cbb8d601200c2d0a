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

from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinatord import backend_url
from coordinatord.errors import BackendError, BackendUnavailableError

URL_SETTING = "backend.url (REDIS_URL, or [backend] url in the config file)"
RECOVERS = "calls fail until then and recover by themselves"


def explain_failover(exc: BaseException, name: str) -> BackendError | None:
    """A Cluster or Sentinel backend between two masters, in words: the errors a client sees
    while a replica is being promoted (after the client's own retries gave up). None when
    ``exc`` is not one of them. Shared by every topology: READONLY from a single server means
    its URL names a replica, which the message says too."""
    text = str(exc)
    if isinstance(exc, ClusterDownError):  # CLUSTERDOWN, MASTERDOWN (a subclass)
        return BackendUnavailableError(
            f"backend {name}: the cluster is failing over ({text}): no master serves some of its "
            f"slots until a replica is promoted (within the cluster's cluster-node-timeout); {RECOVERS}",
            kind="failover",
        )
    if isinstance(exc, SlotNotCoveredError):
        return BackendUnavailableError(
            f"backend {name}: no master owns the slot of this key ({text}); the cluster is failing "
            f"over or its slots are not all assigned (CLUSTER INFO says which); {RECOVERS} once a "
            "master owns it",
            kind="failover",
        )
    if isinstance(exc, TryAgainError | MovedError | AskError):
        return BackendUnavailableError(
            f"backend {name}: the cluster is moving slots or changing masters ({type(exc).__name__}: "
            f"{text}); {RECOVERS} when it settles",
            kind="failover",
        )
    if isinstance(exc, ReadOnlyError):
        return BackendUnavailableError(
            f"backend {name}: the server answered READONLY: it is a replica now, so a failover is "
            f"under way ({RECOVERS} once the new master is found), or backend.url names a replica "
            "(point it at the master)",
            kind="failover",
        )
    if "no master found" in text.lower():  # redis-py's MasterNotFoundError (Sentinel)
        return BackendUnavailableError(
            f"backend {name}: no sentinel names a healthy master ({text}): a failover is under way "
            f"({RECOVERS} once the sentinels promote a replica), or backend.sentinel_master names "
            "no master they monitor (SENTINEL MASTERS on a sentinel lists them)",
            kind="failover",
        )
    if isinstance(exc, RedisClusterException) and "slot" in text.lower():
        return BackendError(
            f"backend {name}: a command named keys of more than one cluster slot ({text}); keys of "
            "one project share its {{project}} hash tag, so this is a bug: please report it",
            kind="crossslot",
        )
    return None


def explain_node_down(exc: BaseException, name: str, topology: str) -> BackendError | None:
    """A node of a Cluster or the master of a Sentinel set-up not answering: first of all a
    failover in progress, unless it lasts."""
    if not isinstance(exc, RedisConnectionError | ConnectionError | OSError) or isinstance(
        exc, RedisTimeoutError
    ):
        return None
    if topology == "cluster":
        advice = (
            "if a master died, the cluster is failing over: it promotes the master's replica within "
            f"cluster-node-timeout, and {RECOVERS}; if it lasts, check that the nodes run and that "
            "backend.url names one"
        )
    else:
        advice = (
            "if the master died, a failover is under way: the sentinels promote a replica after "
            f"down-after-milliseconds, and {RECOVERS}; if it lasts, check the sentinels "
            "(backend.sentinels) and the master"
        )
    return BackendUnavailableError(
        f"backend {name}: a server could not be reached ({exc}): {advice}", kind="failover"
    )


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
