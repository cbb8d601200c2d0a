"""What a backend URL may look like, checked before anything connects; and the URL forms that
fix the usual mistakes (a missing password, a wrong database).

Standard library only: the settings validator, ``doctor`` and error messages all use it, and a
malformed URL must be a settings error (exit 2, no traceback) wherever it is read, rather than
whatever redis-py raises when it first parses it (a ``ValueError`` for ``redis://host:notaport``,
silence and database 0 for ``redis://host:6379/abc``).
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qs, urlsplit

SCHEMES = ("redis", "rediss", "unix")
FORMS = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://… for TLS, or unix:///PATH/TO.sock[?db=DB]"


def mask(url: str) -> str:
    """``url`` with any password in it (``user:secret@`` or ``?password=``) replaced by ``***``.
    Safe on malformed URLs: they are shown in the errors that say what is wrong with them."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that cannot be parsed>"
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = "&".join(
        "password=***" if part.startswith("password=") else part for part in parts.query.split("&")
    )
    return _join(parts, netloc=netloc, query=query)


def problem(url: str) -> str | None:
    """What is wrong with ``url`` as a backend URL, or None when it is well formed. The text
    never contains the password."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced [ in an IPv6 host
        return f"is not a URL ({exc}); expected {FORMS}"
    if parts.scheme not in SCHEMES:
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        return f"has {shown}; it must start with redis://, rediss:// or unix:// ({FORMS})"
    query = parse_qs(parts.query)
    db_values = query.get("db", [])
    for value in db_values:
        if not value.isdigit():
            return f"has db={value!r} in its query; the database must be a number such as db=0"
    if parts.scheme == "unix":
        if not parts.path:
            return f"names no socket path; expected unix:///PATH/TO.sock[?db=DB] ({FORMS})"
        return None
    try:
        port = parts.port
    except ValueError:
        raw_port = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        return f"has port {raw_port!r}; the port must be a number from 1 to 65535, e.g. :6379"
    if port == 0:
        return "has port 0; the port must be a number from 1 to 65535, e.g. :6379"
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        return f"has {parts.path!r} as its path, which must be the database number (e.g. /0) or nothing"
    return None


def database(url: str) -> int:
    """The database number a well-formed ``url`` selects (0 when it names none)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query).get("db")
    if query:
        return int(query[-1])
    path = parts.path.lstrip("/")
    if parts.scheme != "unix" and path:
        return int(path)
    return 0


PASSWORD_PLACEHOLDER = "PASSWORD"  # noqa: S105 (what messages show in its place, not a secret)


def with_credentials(url: str, user: str = "", password: str = PASSWORD_PLACEHOLDER) -> str:
    """``url`` with a placeholder password (and user) in it: the form a NOAUTH error asks for.
    Any password ``url`` already holds is replaced, so the result is safe to show."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return _join(parts, netloc=f"{user}:{password}@{host}")


def without_credentials(url: str) -> str:
    """``url`` with no user, password or ``?password=`` in it."""
    parts = urlsplit(url)
    query = "&".join(part for part in parts.query.split("&") if part and not part.startswith("password="))
    return _join(parts, netloc=parts.netloc.rpartition("@")[2], query=query)


def with_database(url: str, number: int) -> str:
    """``url`` selecting database ``number`` instead (password masked by the caller)."""
    parts = urlsplit(url)
    if parts.scheme == "unix" or parse_qs(parts.query).get("db"):
        query = "&".join(part for part in parts.query.split("&") if part and not part.startswith("db="))
        query = f"{query}&db={number}" if query else f"db={number}"
        return _join(parts, query=query)
    return _join(parts, path=f"/{number}")


def has_password(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password) or bool(parse_qs(parts.query).get("password"))


def host_port(url: str) -> tuple[str, int] | None:
    """The TCP endpoint of a well-formed redis:// or rediss:// URL (None for unix://)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return None
    return parts.hostname or "localhost", parts.port or 6379


def _join(
    parts: SplitResult, *, netloc: str | None = None, path: str | None = None, query: str | None = None
) -> str:
    # Not urlunsplit: it drops the // of a URL with an empty host, turning unix:///s into unix:/s.
    query = parts.query if query is None else query
    text = (
        f"{parts.scheme}://{parts.netloc if netloc is None else netloc}{parts.path if path is None else path}"
    )
    if query:
        text += f"?{query}"
    if parts.fragment:
        text += f"#{parts.fragment}"
    return text
