"""The backend URL checks and the URL forms error messages suggest (pure functions)."""

from __future__ import annotations

import pytest

from coordinatord import backend_url


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://localhost",
        "redis://:pw@10.0.0.1:6380/15",
        "rediss://user:pw@cache.example.com:6380/2",
        "redis://[::1]:6379/0",
        "unix:///run/redis/redis.sock",
        "unix:///run/redis/redis.sock?db=3",
        "redis://h:6379/0?db=2",
    ],
)
def test_well_formed_urls_pass(url: str) -> None:
    """Every URL form the daemon accepts (redis, rediss, IPv6 hosts, unix sockets, db in path or query)
    passes the check."""
    assert backend_url.problem(url) is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:6379", "has http://"),
        ("localhost:6379", "has localhost://"),
        ("redis://h:notaport/0", "has port 'notaport'"),
        ("redis://h:0", "has port 0"),
        ("redis://h:65536", "has port '65536'"),
        ("redis://h:6379/abc", "'/abc' as its path"),
        ("redis://h:6379/0/1", "'/0/1' as its path"),
        ("redis://h/0?db=x", "db='x'"),
        ("unix://", "names no socket path"),
        ("redis://[::1:6379", "is not a URL"),
    ],
)
def test_malformed_urls_name_what_is_wrong(url: str, says: str) -> None:
    """Each kind of malformed URL (wrong scheme, bad port, bad path or db, no socket path, unparseable) is
    reported with the part that is wrong."""
    found = backend_url.problem(url)
    assert found is not None and says in found


def test_problems_never_show_the_password() -> None:
    """The message for a malformed URL never repeats the password it contains."""
    found = backend_url.problem("redis://:hunter2@h:port/0")
    assert found is not None and "hunter2" not in found


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://ana:s3cret@h/1", "redis://ana:***@h/1"),
        ("redis://ana@h/1", "redis://ana@h/1"),
        ("redis://h:notaport/0", "redis://h:notaport/0"),
        ("redis://:s3cret@h:notaport/0", "redis://:***@h:notaport/0"),
        ("unix:///tmp/r.sock?password=s3cret&db=1", "unix:///tmp/r.sock?password=***&db=1"),
        ("", ""),
    ],
)
def test_mask(url: str, masked: str) -> None:
    """Masking replaces the password (in the userinfo or a unix URL's query) with *** and leaves the rest
    of the URL, even an invalid one, as written."""
    assert backend_url.mask(url) == masked


def test_mask_of_an_unparseable_url_shows_nothing_of_it() -> None:
    """A URL too broken to parse is masked without leaking its password."""
    assert "s3cret" not in backend_url.mask("redis://:s3cret@[::1")


def test_with_credentials_gives_the_form_to_copy() -> None:
    """The suggested URL puts PASSWORD (and USER when asked) in place of any credentials, for TCP and unix
    URLs, so error messages can show a form to copy without the real password."""
    assert backend_url.with_credentials("redis://127.0.0.1:6391/0") == "redis://:PASSWORD@127.0.0.1:6391/0"
    # A wrong password already in the URL is replaced, never shown.
    assert backend_url.with_credentials("redis://:bad@h:1/2", user="USER") == "redis://USER:PASSWORD@h:1/2"
    assert backend_url.with_credentials("unix:///tmp/r.sock") == "unix://:PASSWORD@/tmp/r.sock"


@pytest.mark.parametrize(
    ("url", "number"),
    [("redis://h:1/5", 5), ("redis://h", 0), ("unix:///s?db=4", 4), ("redis://h/1?db=3", 3)],
)
def test_database(url: str, number: int) -> None:
    """The database number comes from the path or the db query parameter (the query wins), and is 0 when
    neither is given."""
    assert backend_url.database(url) == number


def test_without_credentials() -> None:
    """Credentials are dropped from both the userinfo and a unix URL's password parameter, keeping the
    rest."""
    assert backend_url.without_credentials("redis://ana:pw@h:1/2") == "redis://h:1/2"
    assert backend_url.without_credentials("unix:///s?password=pw&db=1") == "unix:///s?db=1"


def test_with_database() -> None:
    """The database number is replaced or added, in the path for TCP URLs and as the db parameter for unix
    URLs."""
    assert backend_url.with_database("redis://h:1/99", 0) == "redis://h:1/0"
    assert backend_url.with_database("redis://h:1", 2) == "redis://h:1/2"
    assert backend_url.with_database("unix:///s?db=99&x=1", 0) == "unix:///s?x=1&db=0"


def test_host_port() -> None:
    """A TCP URL gives its host and port (6379 by default); a unix URL has none."""
    assert backend_url.host_port("redis://h") == ("h", 6379)
    assert backend_url.host_port("rediss://h:7000/0") == ("h", 7000)
    assert backend_url.host_port("unix:///s") is None
