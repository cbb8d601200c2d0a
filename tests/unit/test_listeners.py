"""/proc/net/tcp{,6} read into listeners (pure parsing, and one live read of this machine)."""

from __future__ import annotations

import socket
from pathlib import Path

from coordinatord.listeners import Listener, listening_on, parse_proc_net_tcp

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 6431 1 0 100 0 0 10 0
   1: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7001 1 0 100 0 0 10 0
   2: 0100007F:18EB 0100007F:D3A2 01 00000000:00000000 00:00000000 00000000   106        0 7002 1 0 20 4 30 10 -1
   3: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 6432 1 0 100 0 0 10 0
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4428 1 0 100 0 0 10 0
   1: 00000000000000000000000000000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4429 1 0 100 0 0 10 0
"""


def test_ipv4_listeners_are_read_and_connections_skipped() -> None:
    """IPv4 listening sockets are read with their address, port and inode; established connections are left
    out."""
    found = parse_proc_net_tcp(TCP, ipv6=False)
    assert [(ln.address, ln.port, ln.inode) for ln in found] == [
        ("127.0.0.1", 6379, 6431),
        ("0.0.0.0", 6379, 7001),
        ("127.0.0.1", 5432, 6432),
    ]


def test_ipv6_listeners_are_read() -> None:
    """IPv6 listening sockets are read with their address in the usual short form."""
    assert [(ln.address, ln.port) for ln in parse_proc_net_tcp(TCP6, ipv6=True)] == [
        ("::1", 6379),
        ("::", 6379),
    ]


def test_which_listener_a_host_reaches() -> None:
    """A loopback listener serves only loopback hosts, a wildcard one serves any, and a listener is shown
    with its owner."""
    relay, docker = Listener("127.0.0.1", 6379, 1), Listener("0.0.0.0", 6379, 2)
    assert relay.serves("127.0.0.1") and relay.serves("localhost") and not relay.serves("10.0.0.5")
    assert docker.wildcard and docker.serves("10.0.0.5")
    assert Listener("::1", 6379, 3, "redis-server, pid 9").shown == "[::1]:6379 (redis-server, pid 9)"


def test_a_fake_proc_with_an_owner(tmp_path: Path) -> None:
    """Listeners on a port are found in a proc tree and given the owning process's name and pid where a
    process holds the socket's inode."""
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP)
    fds = tmp_path / "4242" / "fd"
    fds.mkdir(parents=True)
    (fds / "7").symlink_to("socket:[7001]")
    (tmp_path / "4242" / "comm").write_text("docker-proxy\n")
    found = listening_on(6379, proc=tmp_path)
    assert [ln.shown for ln in found] == ["127.0.0.1:6379", "0.0.0.0:6379 (docker-proxy, pid 4242)"]


def test_this_machine_sees_a_socket_this_process_listens_on() -> None:
    """On a machine with /proc, a socket this process listens on is found on its port and named as this
    process's."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = listening_on(port)
    if not Path("/proc/net/tcp").exists():
        assert found == []
        return
    assert [ln.address for ln in found] == ["127.0.0.1"]
    assert found[0].owner is not None and "pid" in found[0].owner
