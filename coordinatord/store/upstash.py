"""The store over Upstash's REST API: one HTTPS POST per command, ``/pipeline`` for a batch.

Protocol (upstash.com/docs/redis/features/restapi): ``POST <url>`` with a JSON array
``["SET", "k", "v", "EX", "60"]`` answers ``{"result": ...}``, or ``{"error": "..."}`` with
HTTP 400 when Redis refused the command; ``POST <url>/pipeline`` with an array of such arrays
answers an array of ``{"result"|"error"}`` (HTTP 200 even when one command failed). The token
travels only in the ``Authorization: Bearer`` header, never in the URL, so no message, log line
or ``store.name`` can carry it.

Replies are RESP2 turned into JSON (strings, integers, arrays, null): the raw values
:class:`~coordinatord.store.redis.RedisStore` reads over RESP2 too, so the typed operations both
inherit (:mod:`coordinatord.store.interface`) parse them alike and no service can tell the
backends apart. Bodies are decoded as UTF-8 with replacement, as RedisStore decodes
(``encoding_errors="replace"``).

Bounds: every call, retries and backoff included, ends within ``backend.timeout_s`` with
:class:`BackendUnavailableError` or :class:`BackendError`, as with RedisStore. Connection
failures, timeouts and HTTP 502/503/504 are retried with the configured exponential backoff;
like redis-py's retry this may resend a command whose reply was lost, which is why every script
that changes state is exactly-once (:mod:`coordinatord.store.once`).

Read-your-writes: an Upstash global database may answer a read from a replica. Each reply's
``Upstash-Sync-Token`` goes back with the next request, as Upstash's own SDKs do, so a read sees
this daemon's earlier writes.

Scripts: EVALSHA by the SHA1 computed here; on NOSCRIPT (first use, a flushed or restarted
server) one EVAL with the source, which also caches it on the server for the next EVALSHA.

Not available over REST, and used by no service (ARCHITECTURE.md: "backends speak
request/response"): blocking reads (BLPOP, XREAD BLOCK), SUBSCRIBE, MULTI/EXEC/WATCH across
calls.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2

from coordinatord import __version__
from coordinatord.errors import BackendError, BackendUnavailableError, ConfigError
from coordinatord.keyspace import write_record_ttl_s
from coordinatord.settings import BackendSettings
from coordinatord.store.bounded import bounded_call
from coordinatord.store.interface import Arg, Command, Parse, StoreCommands
from coordinatord.store.once import exactly_once_source, with_write_record

T = TypeVar("T")
# Idle keep-alive connections are kept this long: a TLS handshake to Upstash costs a round trip or
# two, and calls come in bursts. A connection the server closed meanwhile is retried.
KEEPALIVE_EXPIRY_S = 30.0
MAX_KEEPALIVE = 20
# A gateway in front of the database answered, the database did not: worth another try.
RETRY_STATUSES = frozenset({502, 503, 504})
SYNC_HEADER = "upstash-sync-token"
# Failures where no reply came back; anything else from httpx2 is not worth repeating.
_RETRYABLE = (httpx2.NetworkError, httpx2.TimeoutException, httpx2.RemoteProtocolError)

URL_SETTING = "backend.upstash_url (UPSTASH_REDIS_REST_URL)"
AUTH_SETTING = "backend.upstash_token (UPSTASH_REDIS_REST_TOKEN)"


def describe_rest_url(url: str) -> str:
    """How the backend is named in messages: scheme, host and path; no user info, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def check_rest_url(url: str) -> str:
    """The REST URL without a trailing slash, or a ConfigError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        # Only the scheme is repeated: a malformed value may hold a pasted token.
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ConfigError(
            f"{URL_SETTING} must be the database's REST URL, like https://xxx.upstash.io "
            f"(https:// and a host); got a value with {got}"
        )
    return url.rstrip("/")


def _ssl_context(settings: BackendSettings) -> ssl.SSLContext | bool:
    """httpx2's default verification unless the backend.tls_* settings ask for something else."""
    if not (settings.tls_ca_file or settings.tls_cert_file or not settings.tls_check_hostname):
        return True
    try:
        if settings.tls_ca_file:
            # Like rediss:// with ssl_ca_certs: the configured CA replaces the system's.
            context = ssl.create_default_context(cafile=str(settings.tls_ca_file))
        else:
            context = httpx2.create_ssl_context(trust_env=False)
        if settings.tls_cert_file:
            keyfile = str(settings.tls_key_file) if settings.tls_key_file else None
            context.load_cert_chain(str(settings.tls_cert_file), keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"backend.tls_ca_file / tls_cert_file / tls_key_file cannot be loaded for the Upstash REST "
            f"backend: {exc}"
        ) from None
    context.check_hostname = settings.tls_check_hostname
    return context


class _Refused(Exception):
    """Redis refused a command; the text is its error (``ERR ...``, ``NOSCRIPT ...``)."""


class UpstashStore(StoreCommands):
    """The typed operations (:class:`~coordinatord.store.interface.Store`) on an Upstash database
    over its REST API."""

    def __init__(self, url: str, token: str, settings: BackendSettings, name: str | None = None) -> None:
        url = check_rest_url(url)
        if not token:
            raise ConfigError(f"{AUTH_SETTING} is empty; the REST API needs the database's token")
        self.name = name or f"{describe_rest_url(url)} (Upstash REST)"
        self._timeout_s = settings.timeout_s
        self._retries = settings.retries
        self._backoff_base_s = settings.retry_backoff_base_s
        self._backoff_cap_s = settings.retry_backoff_cap_s
        self._sync_token = ""
        self._client = httpx2.AsyncClient(
            base_url=url + "/",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "User-Agent": f"coordinatord/{__version__}",
            },
            timeout=httpx2.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            limits=httpx2.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=min(settings.max_connections, MAX_KEEPALIVE),
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
            ),
            verify=_ssl_context(settings),
            # Settings are read once by the CLI; proxies and CA paths do not come from the environment.
            trust_env=False,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: BackendSettings) -> UpstashStore:
        return cls(settings.upstash_url, settings.upstash_token.get_secret_value(), settings)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await bounded_call(self.name, self._timeout_s, operation, refused=(_Refused,))

    def _backoff(self, failures: int) -> float:
        # redis-py's ExponentialBackoff, so both stores wait alike between tries.
        return float(min(self._backoff_cap_s, self._backoff_base_s * 2**failures))

    async def _post(self, path: str, body: object) -> Any:
        """One request (retried while no usable reply came back); the decoded JSON reply."""
        # Lone surrogates cannot be UTF-8; "replace" sends "?" for them, as redis-py's encoder does.
        content = json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")
        failures = 0
        while True:
            headers = {SYNC_HEADER: self._sync_token} if self._sync_token else None
            try:
                response = await self._client.post(path, content=content, headers=headers)
            except _RETRYABLE as exc:
                if failures >= self._retries:
                    raise BackendUnavailableError(
                        f"backend {self.name} could not be reached: {_describe(exc)}"
                    ) from None
            except httpx2.HTTPError as exc:
                raise BackendUnavailableError(
                    f"backend {self.name} could not be reached: {_describe(exc)}"
                ) from None
            else:
                if response.status_code not in RETRY_STATUSES or failures >= self._retries:
                    break
            await anyio.sleep(self._backoff(failures))
            failures += 1
        if token := response.headers.get(SYNC_HEADER):
            self._sync_token = token
        return self._reply_of(response)

    def _reply_of(self, response: httpx2.Response) -> Any:
        status = response.status_code
        try:
            payload: Any = json.loads(response.content.decode("utf-8", "replace"))
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        if status in (401, 403):
            raise BackendError(
                f"backend {self.name} rejected the token (HTTP {status}"
                f"{': ' + str(error) if error else ''}); check {AUTH_SETTING}"
            )
        if status >= 500:
            raise BackendUnavailableError(
                f"backend {self.name} answered HTTP {status}: {error or response.reason_phrase}"
            )
        if error is not None:
            raise _Refused(str(error))
        if status != 200 or payload is None:
            kind = response.headers.get("content-type", "no content type")
            raise BackendError(
                f"backend {self.name} answered HTTP {status} ({kind}), not an Upstash REST reply; "
                f"check {URL_SETTING}"
            )
        return payload

    async def _command(self, command: Sequence[Arg]) -> Any:
        """One command, its reply as the JSON gave it (unshaped)."""
        payload = await self._post("", [_arg(part) for part in command])
        if not isinstance(payload, dict) or "result" not in payload:
            raise BackendError(f"backend {self.name} sent a reply without a result to {_brief(command)}")
        return payload["result"]

    async def _pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        payload = await self._post("pipeline", [[_arg(part) for part in command] for command in commands])
        if not isinstance(payload, list) or len(payload) != len(commands):
            raise BackendError(f"backend {self.name} sent a pipeline reply that does not match the batch")
        results: list[Any] = []
        for position, (command, item) in enumerate(zip(commands, payload, strict=True), start=1):
            if not isinstance(item, dict):
                raise BackendError(f"backend {self.name} sent a malformed pipeline reply")
            if "error" in item:
                failed = f"command #{position} of the batch ({_brief(command)}) failed"
                raise _Refused(f"{failed}: {item['error']}")
            results.append(item.get("result"))
        return results

    async def _one(self, command: Command, parse: Parse[T]) -> T:
        async def run() -> T:
            return parse(await self._command(command))

        return await self._call(run)

    async def _many(self, commands: Sequence[Command]) -> list[Any]:
        return await self._call(lambda: self._pipeline(commands))

    def script(self, source: str, *, exactly_once: bool = True) -> UpstashScript:
        """A Lua script, run by EVALSHA (sent with its source once the server does not know it);
        exactly-once unless told it need not be (:mod:`coordinatord.store.once`): this store
        resends a request whose HTTP reply was lost."""
        return UpstashScript(self, source, write_record_ttl_s(self._timeout_s) if exactly_once else None)


class UpstashScript:
    """A Lua script bound to an Upstash store; calls are bounded and mapped like every other call."""

    def __init__(self, store: UpstashStore, source: str, record_ttl_s: int | None = None) -> None:
        self._store = store
        self._source = source if record_ttl_s is None else exactly_once_source(source)
        self._record_ttl_s = record_ttl_s
        self.sha = hashlib.sha1(self._source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        if self._record_ttl_s is not None:
            keys, args = with_write_record(keys, args, self._record_ttl_s)
        return await self._store._call(lambda: self._run(keys, args))

    async def _run(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        tail: list[Arg] = [len(keys), *keys, *args]
        try:
            return await self._store._command(("EVALSHA", self.sha, *tail))
        except _Refused as exc:
            if "NOSCRIPT" not in str(exc).upper():
                raise
        return await self._store._command(("EVAL", self._source, *tail))


def _arg(value: Arg) -> str:
    """A command argument as the string redis-py would send (floats by repr: exact, and 'inf')."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return str(int(value))


def _brief(command: Sequence[Arg]) -> str:
    # Name and key only: values can be large, and are the caller's data.
    return " ".join(str(part) for part in command[:2])


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
