"""`coordinatord editor add` as a user runs it, into a temporary HOME: the entry it writes starts
a real shim that a real MCP client initializes and calls through to a real daemon, and
`editor list --json` finds it and reaches that daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import json5
import pytest
from mcp import Client, StdioServerParameters

from tests.e2e.conftest import text_of
from tests.support import COORDINATORD, DaemonProcess, running_daemon, short_tmpdir

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon() as process:
        yield process


@pytest.fixture
def place() -> Iterator[Path]:
    """A temporary HOME (``home/``), a project in it (``proj/``) and a config file naming the
    test daemon's socket, so no shim here can reach or start the user's daemon."""
    root = short_tmpdir("ed-")
    (root / "home").mkdir()
    (root / "proj" / ".git").mkdir(parents=True)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(place: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATORD_")}
    env["HOME"] = str(place / "home")
    return subprocess.run(
        [COORDINATORD, "editor", *args],
        cwd=place / "proj",
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def written_argv(editor: str, place: Path) -> list[str]:
    """The command line the editor would start, read back from the file add wrote."""
    home, proj = place / "home", place / "proj"
    if editor == "kilocode":
        return list(json5.loads((proj / "kilo.jsonc").read_text())["mcp"]["redis"]["command"])
    if editor == "codex":
        codex = tomllib.loads((home / ".codex/config.toml").read_text())
        server: dict[str, Any] = codex["mcp_servers"]["redis"]
    elif editor == "cline-cli":
        path = home / ".cline/data/settings/cline_mcp_settings.json"
        server = json.loads(path.read_text())["mcpServers"]["redis"]
    else:
        server = json.loads((home / ".gemini/config/mcp_config.json").read_text())["mcpServers"]["redis"]
    return [server["command"], *server["args"]]


@pytest.mark.parametrize(
    ("editor", "scope"),
    [
        ("kilocode", "--project"),
        ("cline-cli", "--global"),
        ("antigravity", "--global"),
        ("codex", "--global"),
    ],
)
async def test_the_entry_add_writes_starts_a_shim_that_reaches_the_daemon(
    daemon: DaemonProcess, place: Path, editor: str, scope: str
) -> None:
    """For each editor format, the command ``editor add`` writes, started as the editor would start it, is
    a shim that answers MCP and reaches the daemon; ``editor list`` reports it as valid and connected, and
    a second add changes nothing."""
    config = place / "coordinatord.toml"
    config.write_text(f'socket = "{daemon.socket_path}"\n')
    added = run(place, "add", editor, scope, "--config", str(config))
    assert added.returncode == 0, added.stderr
    assert "next:" in added.stdout

    argv = written_argv(editor, place)
    assert argv[0] == COORDINATORD and argv[1:4] == ["shim", "--agent", editor]
    assert "--no-autostart" not in argv
    assert argv[argv.index("--config") + 1] == str(config)

    # Started the way the editor starts it, with a HOME of its own (an MCP client passes HOME).
    params = StdioServerParameters(
        command=argv[0], args=argv[1:], env={"HOME": str(place / "home")}, cwd=str(place / "proj")
    )
    with anyio.fail_after(60):
        async with Client(params, mode="legacy") as client:
            assert client.server_info is not None and client.server_info.name  # initialize succeeded
            assert text_of(await client.call_tool("redis_ping", {})) == "PONG"

    listed = run(place, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [row for row in json.loads(listed.stdout) if row["editor"] == editor]
    assert len(rows) == 1
    row = rows[0]
    assert row["valid"] and row["command_ok"] and row["server"] == "redis"
    assert row["socket"] == str(daemon.socket_path)
    assert row["reaches_daemon"], row
    assert "pid" in row["daemon"]

    again = run(place, "add", editor, scope, "--config", str(config))
    assert "nothing changed" in again.stdout
    removed = run(place, "remove", editor, scope)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(run(place, "list", "--json").stdout) == []
