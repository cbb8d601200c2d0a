"""This daemon's view of presence (what the lease writer is told to write) and the settings
that name a host and pace the renewals; pure logic, no server."""

from __future__ import annotations

import pytest

from coordinatord.errors import ConfigError
from coordinatord.presence import Presence
from coordinatord.services.presence import record_host, record_member
from coordinatord.settings import default_host_id, load_settings


def test_changes_are_what_opened_and_closed_since_last_asked() -> None:
    """Entered connections are handed out once; one that closes before its record was written
    needs no removal; one closed after is handed out for removal."""
    presence = Presence()
    woken: list[int] = []
    presence.on_change = lambda: woken.append(1)
    presence.enter("p", "kilo", conn=1, pid=10)
    presence.enter("p", "kilo", conn=2)
    presence.leave("p", "kilo", conn=2)
    entered, left = presence.take_changes()
    assert ([c.key for c in entered], left) == (["c1"], [])
    assert presence.take_changes() == ([], [])
    presence.leave("p", "kilo", conn=1)
    entered, left = presence.take_changes()
    assert (entered, [c.key for c in left]) == ([], ["c1"])
    assert len(woken) == 4 and not presence.is_connected("p", "kilo")


def test_unconfirmed_connections_until_their_record_is_written() -> None:
    """A new connection is unconfirmed (the sweep is told of it) until confirm(); changes handed
    back after a failed write come out again: an entered one still open is written again, and
    one closed meanwhile (its record may have been written) is removed."""
    presence = Presence()
    presence.enter("p", "a", conn=1)
    presence.enter("p", "b", conn=2)
    assert presence.unconfirmed("p") == {"a", "b"}
    entered, left = presence.take_changes()
    presence.leave("p", "b", conn=2)
    presence.give_back(entered, left)
    again, gone = presence.take_changes()
    assert ([c.agent for c in again], [c.agent for c in gone]) == (["a"], ["b"])
    presence.confirm(again)
    assert presence.unconfirmed("p") == set()


def test_a_record_is_compact_json_naming_its_host() -> None:
    """The record's bytes are the same at every renewal and say the daemon, connection, host, pid."""
    presence = Presence()
    presence.enter("p", "kilo", conn=3, pid=99)
    [connection] = presence.connections()
    member = record_member("h:1:ab", "h", connection)
    assert member == '{"daemon":"h:1:ab","conn":"c3","host":"h","pid":99}'
    assert record_host(member) == "h" and record_host("not json") is None


def test_host_id_defaults_to_the_hostname_and_is_checked() -> None:
    """daemon.host_id defaults to a valid form of the hostname; a value that cannot be part of a
    key name is refused, naming the setting."""
    settings = load_settings({}, environ={})
    assert settings.daemon.host_id == default_host_id()
    given = load_settings({}, environ={"COORDINATORD_DAEMON__HOST_ID": "laptop-2"})
    assert given.daemon.host_id == "laptop-2"
    with pytest.raises(ConfigError, match=r"daemon.host_id = 'a b'.*COORDINATORD_DAEMON__HOST_ID"):
        load_settings({}, environ={"COORDINATORD_DAEMON__HOST_ID": "a b"})


def test_renewals_must_come_at_least_twice_per_ttl() -> None:
    """presence.renew_s above half of presence.ttl_s stops start-up with a message saying why."""
    environ = {
        "COORDINATORD_PRESENCE__TTL_S": "10",
        "COORDINATORD_PRESENCE__RENEW_S": "6",
    }
    with pytest.raises(ConfigError, match=r"at most half of presence\.ttl_s"):
        load_settings({}, environ=environ)
