"""Who listens on a TCP port of this machine, read from ``/proc/net/tcp`` and ``tcp6``.

For ``coordinatord doctor``: the seed's WSL2 story is two servers on port 6379 — a relay on
``127.0.0.1`` that wants a password, and a Docker container on ``0.0.0.0`` that does not — where
a client asking for ``127.0.0.1:6379`` reaches the first and reports NOAUTH. Seeing both
listeners, and which one a URL reaches, is the whole diagnosis. Linux only; elsewhere the
lists are empty.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 (addresses read from /proc, not bound to)
LISTEN = "0A"  # the TCP state /proc/net/tcp spells LISTEN as
PROC = Path("/proc")
MAX_PROCESSES = 4096
"""Bound on the /proc walk that names owners (a machine with more shows fewer owners)."""


@dataclass(frozen=True)
class Listener:
    address: str  # "127.0.0.1", "0.0.0.0", "::", "::1", ...
    port: int
    inode: int
    owner: str | None = None  # "redis-server, pid 123" when this user may see it

    @property
    def shown(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}" + (f" ({self.owner})" if self.owner else "")

    @property
    def wildcard(self) -> bool:
        return self.address in WILDCARDS

    def serves(self, host: str) -> bool:
        """Whether a connection to ``host`` on this port could land on this listener."""
        if self.wildcard:
            return True
        return self.address == host or (host == "localhost" and self.address in ("127.0.0.1", "::1"))


def parse_proc_net_tcp(text: str, ipv6: bool) -> list[Listener]:
    """The listening sockets in the text of ``/proc/net/tcp`` (``ipv6``: ``tcp6``)."""
    found: list[Listener] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        raw_address, _, raw_port = fields[1].partition(":")
        try:
            address = _address(raw_address, ipv6)
            port, inode = int(raw_port, 16), int(fields[9])
        except ValueError:
            continue
        found.append(Listener(address, port, inode))
    return found


def _address(hex_address: str, ipv6: bool) -> str:
    # The kernel prints each 32-bit word in host byte order (little-endian on x86 and ARM).
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if ipv6:
        ip6 = ipaddress.IPv6Address(words)
        return str(ip6.ipv4_mapped) if ip6.ipv4_mapped else str(ip6)
    return str(ipaddress.IPv4Address(words))


def listening_on(port: int, proc: Path = PROC) -> list[Listener]:
    """Every socket listening on TCP ``port``, IPv4 and IPv6, each named by its owner where
    ``/proc`` lets this user see it."""
    found: list[Listener] = []
    for name, ipv6 in (("tcp", False), ("tcp6", True)):
        try:
            text = (proc / "net" / name).read_text()
        except OSError:
            continue
        found += [listener for listener in parse_proc_net_tcp(text, ipv6) if listener.port == port]
    if not found:
        return found
    owners = _owners({listener.inode for listener in found}, proc)
    return [Listener(ln.address, ln.port, ln.inode, owners.get(ln.inode)) for ln in found]


def _owners(inodes: set[int], proc: Path) -> dict[int, str]:
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    owners: dict[int, str] = {}
    try:
        pids = [entry for entry in os.listdir(proc) if entry.isdigit()][:MAX_PROCESSES]
    except OSError:
        return owners
    for pid in pids:
        try:
            fds = os.listdir(proc / pid / "fd")
        except OSError:
            continue  # another user's process, or gone
        for fd in fds:
            try:
                link = os.readlink(proc / pid / "fd" / fd)
            except OSError:
                continue
            if link in wanted:
                owners[wanted[link]] = f"{_command_name(proc, pid)}, pid {pid}"
        if len(owners) == len(inodes):
            break
    return owners


def _command_name(proc: Path, pid: str) -> str:
    try:
        return (proc / pid / "comm").read_text().strip() or "?"
    except OSError:
        return "?"
