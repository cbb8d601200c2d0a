"""One socket and one config file whatever the environment: a daemon started from a full shell
and a shim started by an MCP client (HOME, LOGNAME, PATH, SHELL, TERM, USER only) meet on the
uid's default socket, and a config.toml in the working directory is nobody's business.

These use the machine's real default socket (there is no way to move it but the overrides the
test is about), so they skip when a daemon of the user's already answers there.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment

from coordinatord import paths
from tests.e2e.conftest import text_of
from tests.support import COORDINATORD, DaemonProcess, short_tmpdir

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

STRAY_CONFIG = """\
# A Hugo site's config.toml, say: nothing of it is coordinatord's.
baseURL = "https://example.org/"
title = "Not ours"
socket = "/tmp/nowhere-coordinatord/x.sock"
[backend]
url = "redis://127.0.0.1:1/0"
"""


def default_socket_answers() -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(paths.default_socket_path()))
    except OSError:
        return False
    finally:
        probe.close()
    return True


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[DaemonProcess, Path, Path]]:
    """A daemon on the default socket, started as from a login shell (XDG_* set, HOME its own),
    in a repository whose cwd holds a foreign config.toml; yields it, HOME and the repository."""
    if default_socket_answers():
        pytest.skip(f"a daemon already answers on the default socket {paths.default_socket_path()}")
    root = short_tmpdir()
    home, repo = root / "home", root / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "config.toml").write_text(STRAY_CONFIG)
    home.mkdir()
    shell_env = {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(root / "xdg-runtime"),
        "XDG_STATE_HOME": str(root / "xdg-state"),
        "XDG_CONFIG_HOME": str(root / "xdg-config"),
    }
    (root / "xdg-runtime").mkdir(mode=0o700)
    daemon = DaemonProcess(root, env=shell_env, default_locations=True)
    del daemon.env["COORDINATORD_CONFIG"]  # find the config file as a user's daemon would
    daemon.cwd = repo
    daemon.start()
    try:
        yield daemon, home, repo
    finally:
        code = daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert code == 0, daemon.output.decode(errors="replace")


def mcp_client_environment(home: Path) -> dict[str, str]:
    """Exactly what the Python SDK passes a server it starts, with the test's HOME."""
    env = {**get_default_environment(), "HOME": str(home)}
    assert set(env) <= {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"}
    return env


async def test_a_shim_with_a_stripped_environment_finds_the_daemon(
    world: tuple[DaemonProcess, Path, Path],
) -> None:
    """No --socket, no XDG_RUNTIME_DIR: the shim reaches the daemon that was started with it
    set, and neither reads the cwd's config.toml (its socket and backend are elsewhere)."""
    daemon, home, repo = world
    assert daemon.socket_path == paths.default_socket_path()
    assert not (Path(daemon.env["XDG_RUNTIME_DIR"]) / "coordinatord").exists()
    params = StdioServerParameters(
        command=COORDINATORD,
        args=["shim", "--agent", "stripped", "--no-autostart"],
        env={"HOME": str(home)},
        cwd=repo,
    )
    with anyio.fail_after(60):
        async with Client(params, mode="legacy") as client:
            assert text_of(await client.call_tool("redis_ping", {})) == "PONG"
            assert text_of(await client.call_tool("redis_set", {"key": "met", "value": "yes"})) == "OK"
            assert text_of(await client.call_tool("redis_get", {"key": "met"})) == "yes"
    ready = next(e for e in daemon.log_events() if e.get("event") == "daemon_ready")
    assert ready["socket"] == str(paths.default_socket_path())
    assert "embedded" in ready["backend"]  # not the stray file's redis://127.0.0.1:1


async def test_status_tail_and_config_ignore_the_cwds_config_toml(
    world: tuple[DaemonProcess, Path, Path],
) -> None:
    """From the repository with the foreign config.toml: status answers (default socket), tail
    reads the daemon's backend, config prints the defaults: none says "baseURL: no such setting"."""
    _daemon, home, repo = world
    env = mcp_client_environment(home)
    with anyio.fail_after(60):
        status = await anyio.run_process([COORDINATORD, "status", "--json"], env=env, cwd=repo, check=False)
        tail = await anyio.run_process([COORDINATORD, "tail", "-n", "5"], env=env, cwd=repo, check=False)
        config = await anyio.run_process([COORDINATORD, "config"], env=env, cwd=repo, check=False)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["daemon"]["socket"] == str(paths.default_socket_path())
    assert tail.returncode == 0, tail.stderr
    assert config.returncode == 0, config.stderr
    effective = json.loads(config.stdout)
    assert effective["socket"] == str(paths.default_socket_path())
    assert effective["state_dir"] == str(home / ".local" / "state" / "coordinatord")
    assert effective["backend"]["url"] == ""
    for done in (status, tail, config):
        assert b"baseURL" not in done.stderr


def test_serve_in_a_folder_with_a_foreign_config_toml_starts(world: tuple[DaemonProcess, Path, Path]) -> None:
    """The daemon of the fixture was started in that folder and is serving (it would have
    exited 2 on "baseURL ... no such setting" before)."""
    daemon, _home, _repo = world
    assert daemon.process is not None and daemon.process.poll() is None
    assert any(e.get("event") == "daemon_ready" for e in daemon.log_events())
