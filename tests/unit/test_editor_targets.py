"""`editor add`/`remove` for every editor and scope, into a temporary home and project (never the
real HOME): the file parses with its format's own parser, what was there survives, a second add
changes nothing, remove gives back the original bytes, bad files are refused untouched."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import json5
import pytest

from coordinatord import editors, tool_groups
from coordinatord.editors import EditorConfigError, Target
from tests.support import COORDINATORD

CASES = [(target, scope) for target in editors.TARGETS for scope in target.scopes()]
IDS = [f"{target.editor}-{scope}" for target, scope in CASES]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "proj"
    (path / ".git").mkdir(parents=True)
    return path


def where(target: Target, scope: str, home: Path, project: Path) -> Path:
    return editors.config_path(target, scope, home, project if scope == "project" else None)


def entry(target: Target, project: Path | None = None, agent: str | None = None) -> dict[str, Any]:
    argv = editors.shim_argv([COORDINATORD], agent or target.agent, project=project)
    allow = tool_groups.always_allow(None, False) if target.allow_key else None
    return editors.entry_for(target, argv, allow)


def existing_text(target: Target) -> str:
    """A file the user already has: another server, other settings, comments where allowed."""
    if target.syntax == "toml":
        return (
            '# my codex\nmodel = "o3"  # the model\n\n'
            '[mcp_servers.other]\ncommand = "node"\nargs = ["x.js"]\n'
        )
    other: dict[str, Any] = (
        {"type": "local", "command": ["node", "x.js"]} if target.shape == "kilo" else {"command": "node"}
    )
    servers = '{\n    "other": ' + json.dumps(other) + "\n  }"
    head = '{\n  "theme": "dark",\n  '
    if target.syntax == "jsonc":
        head = '{\n  // user comment\n  "theme": "dark", /* block */\n  '
    for key in reversed(target.container[1:]):
        servers = "{" + json.dumps(key) + ": " + servers + "}"
    return head + json.dumps(target.container[0]) + ": " + servers + "\n}\n"


def load(target: Target, text: str) -> Any:
    """The file read by its format's own parser, not by ours."""
    if target.syntax == "toml":
        return tomllib.loads(text)
    if target.syntax == "json":
        return json.loads(text)
    return json5.loads(text)


def servers_of(target: Target, data: Any) -> dict[str, Any]:
    for key in target.container:
        data = data[key]
    assert isinstance(data, dict)
    return data


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".coordinatord-backup-*"))


@pytest.mark.parametrize(("target", "scope"), CASES, ids=IDS)
def test_add_merges_keeps_the_rest_and_remove_restores_the_bytes(
    target: Target, scope: str, home: Path, project: Path
) -> None:
    """For every editor and scope, add merges our entry beside the user's servers, settings and comments
    and keeps a backup; a second add writes nothing, and remove restores the original bytes."""
    path = where(target, scope, home, project)
    path.parent.mkdir(parents=True, exist_ok=True)
    original = existing_text(target)
    path.write_text(original)
    wanted = entry(target, project if scope == "project" else None)

    change = editors.plan_add(target, path, wanted)
    assert change.note == "added"
    backup = editors.apply(change)
    assert backup is not None and backup.read_text() == original
    text = path.read_text()
    servers = servers_of(target, load(target, text))
    assert servers["redis"] == wanted
    assert "other" in servers
    argv = editors.entry_argv(servers["redis"])
    assert argv is not None and argv[:4] == [COORDINATORD, "shim", "--agent", target.agent]
    for kept in ("// user comment", "/* block */", "# my codex", "# the model"):
        assert (kept in text) == (kept in original)
    if target.allow_key:
        assert servers["redis"][target.allow_key] == tool_groups.always_allow(["default"], False)

    again = editors.plan_add(target, path, wanted)
    assert not again.changed and editors.apply(again) is None
    assert path.read_text() == text and backups(path) == [backup]

    removal = editors.plan_remove(target, path)
    assert removal.note.startswith("restored from")
    editors.apply(removal)
    assert path.read_bytes() == original.encode()


@pytest.mark.parametrize(("target", "scope"), CASES, ids=IDS)
def test_a_file_add_created_is_deleted_by_remove(
    target: Target, scope: str, home: Path, project: Path
) -> None:
    """Where no config file existed, add creates one with our entry and no backup, and remove deletes it
    again."""
    path = where(target, scope, home, project)
    change = editors.plan_add(target, path, entry(target))
    assert change.before is None and editors.apply(change) is None
    assert servers_of(target, load(target, path.read_text()))["redis"] == entry(target)
    editors.apply(editors.plan_remove(target, path))
    assert not path.exists()


@pytest.mark.parametrize(("target", "scope"), CASES, ids=IDS)
def test_a_malformed_file_is_refused_and_left_alone(
    target: Target, scope: str, home: Path, project: Path
) -> None:
    """A config file that does not parse is refused with its path and the error's position, and is left
    byte for byte as it was with no backup made."""
    path = where(target, scope, home, project)
    path.parent.mkdir(parents=True, exist_ok=True)
    broken = (
        '[mcp_servers.x\ncommand = "a"\n'
        if target.syntax == "toml"
        else '{\n  "mcpServers": {\n    "a": 1\n    "b": 2\n}'
    )
    path.write_text(broken)
    with pytest.raises(EditorConfigError) as caught:
        editors.plan_add(target, path, entry(target))
    message = str(caught.value)
    assert str(path) in message and "nothing was written" in message
    if target.syntax != "toml":
        assert f"{path}:4:5:" in message
    else:
        assert f"{path}:1:" in message
    assert path.read_text() == broken and backups(path) == []


@pytest.mark.parametrize(("target", "scope"), CASES, ids=IDS)
def test_a_foreign_server_of_that_name_is_refused_unless_forced(
    target: Target, scope: str, home: Path, project: Path
) -> None:
    """An existing server of the same name that is not ours (such as the seed's) is not overwritten unless
    forced; ``--name`` adds ours beside it, and remove refuses to take out a server that is not ours."""
    path = where(target, scope, home, project)
    seed = {"command": "node", "args": [".kilocode/mcp-servers/redis-server.js"]}
    editors.apply(editors.plan_add(target, path, seed, force=True))  # the seed's own server
    before = path.read_bytes()
    with pytest.raises(EditorConfigError, match=r"--name NAME.*--force"):
        editors.plan_add(target, path, entry(target))
    assert path.read_bytes() == before
    named = editors.plan_add(target, path, entry(target), name="coordinatord")
    editors.apply(named)
    servers = servers_of(target, load(target, path.read_text()))
    assert servers["redis"] == seed and servers["coordinatord"] == entry(target)
    editors.apply(editors.plan_add(target, path, entry(target), force=True))
    assert servers_of(target, load(target, path.read_text()))["redis"] == entry(target)
    foreign = {"command": "node", "args": []}
    editors.apply(editors.plan_add(target, path, foreign, name="foreign", force=True))
    with pytest.raises(EditorConfigError, match="not coordinatord's"):
        editors.plan_remove(target, path, name="foreign")


@pytest.mark.parametrize(
    "target", [t for t in editors.TARGETS if t.syntax == "jsonc"], ids=lambda t: t.editor
)
def test_remove_after_the_user_edited_takes_out_only_our_entry(
    target: Target, home: Path, project: Path
) -> None:
    """Without a backup that matches, our member comes out by span, byte for byte where add appended."""
    path = where(target, target.scopes()[0], home, project)
    path.parent.mkdir(parents=True, exist_ok=True)
    original = existing_text(target)
    path.write_text(original)
    editors.apply(editors.plan_add(target, path, entry(target)))
    for backup in backups(path):
        backup.unlink()
    removal = editors.plan_remove(target, path)
    assert removal.note == "removed"
    editors.apply(removal)
    assert path.read_bytes() == original.encode()
    # And after an edit of the user's, the edit stays.
    editors.apply(editors.plan_add(target, path, entry(target)))
    edited = path.read_text().replace('"dark"', '"light"')
    path.write_text(edited)
    editors.apply(editors.plan_remove(target, path))
    assert path.read_text() == original.replace('"dark"', '"light"')


def test_an_update_keeps_keys_the_user_added_and_backs_up(home: Path) -> None:
    """Updating our entry keeps keys the user added to it and makes a backup; remove then takes our entry
    out rather than restoring a backup that holds our older one."""
    target = editors.BY_NAME["roo"]
    path = where(target, "global", home, home)
    editors.apply(editors.plan_add(target, path, entry(target)))
    data = json.loads(path.read_text())
    data["mcpServers"]["redis"]["disabled"] = False
    data["mcpServers"]["redis"]["timeout"] = 120
    path.write_text(json.dumps(data, indent=2))
    newer = entry(target, agent="roo-2")
    change = editors.plan_add(target, path, newer)
    assert change.note == "updated"
    assert editors.apply(change) is not None
    redis = json.loads(path.read_text())["mcpServers"]["redis"]
    assert redis == {**newer, "disabled": False, "timeout": 120}
    # The backup holds our older entry: remove takes ours out instead of restoring it.
    editors.apply(editors.plan_remove(target, path))
    assert json.loads(path.read_text()) == {"mcpServers": {}}


def test_crlf_files_keep_their_line_ends(home: Path) -> None:
    """A file with CRLF line ends keeps them on every line after add, and remove gives back its bytes."""
    target = editors.BY_NAME["cursor"]
    path = where(target, "global", home, home)
    path.parent.mkdir(parents=True)
    original = '{\r\n  "mcpServers": {\r\n    "a": {"command": "x"}\r\n  }\r\n}\r\n'
    path.write_bytes(original.encode())
    editors.apply(editors.plan_add(target, path, entry(target)))
    raw = path.read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n")
    for backup in backups(path):
        backup.unlink()
    editors.apply(editors.plan_remove(target, path))
    assert path.read_bytes() == original.encode()


def test_antigravity_prefers_the_2_0_file(home: Path) -> None:
    """Antigravity's config is the 2.0 path, unless only a pre-2.0 install's file exists; once the 2.0
    directory exists it wins again."""
    target = editors.BY_NAME["antigravity"]
    assert editors.config_path(target, "global", home, None) == home / ".gemini/config/mcp_config.json"
    old = home / ".gemini/antigravity/mcp_config.json"
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    assert editors.config_path(target, "global", home, None) == old  # a pre-2.0 install
    (home / ".gemini/config").mkdir()
    assert editors.config_path(target, "global", home, None) == home / ".gemini/config/mcp_config.json"


def test_kilocode_uses_an_existing_dot_kilo_file(project: Path) -> None:
    """Kilo Code's project config is kilo.jsonc at the root, or .kilo/kilo.jsonc when that file already
    exists."""
    target = editors.BY_NAME["kilocode"]
    assert editors.config_path(target, "project", project, project) == project / "kilo.jsonc"
    (project / ".kilo").mkdir()
    (project / ".kilo/kilo.jsonc").write_text("{}")
    assert editors.config_path(target, "project", project, project) == project / ".kilo/kilo.jsonc"


def test_scopes_an_editor_does_not_have_are_refused(home: Path) -> None:
    """Asking for a project config of an editor that has only a global one is an error saying so."""
    with pytest.raises(EditorConfigError, match="no project config"):
        editors.config_path(editors.BY_NAME["windsurf"], "project", home, home)


def test_discover_reports_validity(home: Path, project: Path) -> None:
    """Discovery reports each config file holding our server (or too broken to tell) with whether it
    parses, whether its command exists and which socket it uses; a file with only other servers is not
    reported."""
    kilo, cline = editors.BY_NAME["kilocode"], editors.BY_NAME["cline-cli"]
    editors.apply(editors.plan_add(kilo, where(kilo, "project", home, project), entry(kilo, project)))
    broken = where(cline, "global", home, project)
    gone = editors.entry_for(cline, ["/nonexistent/coordinatord", "shim", "--socket", "/tmp/x.sock"], [])
    editors.apply(editors.plan_add(cline, broken, gone))
    cursor = editors.BY_NAME["cursor"]
    bad = where(cursor, "global", home, project)
    bad.parent.mkdir(parents=True)
    bad.write_text('{"mcpServers": {"redis": {"command": "coordinatord", ')
    (home / ".codeium/windsurf").mkdir(parents=True)
    (home / ".codeium/windsurf/mcp_config.json").write_text('{"mcpServers": {"x": {"command": "node"}}}')

    found = {f.editor: f for f in editors.discover(home, project)}
    assert set(found) == {"kilocode", "cline-cli", "cursor"}
    assert found["kilocode"].valid and found["kilocode"].scope == "project"
    assert found["kilocode"].command[:2] == [COORDINATORD, "shim"]
    assert not found["cline-cli"].command_ok and "does not exist" in str(found["cline-cli"].problem)
    assert found["cline-cli"].socket == "/tmp/x.sock"
    assert not found["cursor"].parses and found["cursor"].server is None
    assert f"{bad}:1:" in str(found["cursor"].problem)
    assert editors.discover(home, None) == [f for f in editors.discover(home, project) if f.scope == "global"]


def test_the_socket_comes_from_the_config_file_named_in_the_args(home: Path, tmp_path: Path) -> None:
    """The socket a shim entry will use is read from the ``--config`` file in its args, overridden by
    COORDINATORD_SOCKET in its env, and taken from the home's config file when no ``--config`` is given."""
    config = tmp_path / "c.toml"
    config.write_text('socket = "/tmp/from-config.sock"\n')
    argv = [COORDINATORD, "shim", "--config", str(config)]
    assert editors.shim_socket(argv, {}, home) == Path("/tmp/from-config.sock")
    assert editors.shim_socket(argv, {"COORDINATORD_SOCKET": "/tmp/env.sock"}, home) == Path("/tmp/env.sock")
    (home / ".config/coordinatord").mkdir(parents=True)
    (home / ".config/coordinatord/config.toml").write_text('socket = "/tmp/home.sock"\n')
    assert editors.shim_socket(argv[:2], {}, home) == Path("/tmp/home.sock")


def cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATORD_")}
    env["HOME"] = str(home)
    return subprocess.run(
        [COORDINATORD, "editor", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dry_run_prints_the_diff_and_writes_nothing(home: Path, project: Path) -> None:
    """``editor add --dry-run`` prints a unified diff (from /dev/null for a new file) and writes no file or
    directory."""
    path = project / ".mcp.json"
    path.write_text('{\n  "mcpServers": {}\n}\n')
    before = sorted(project.iterdir())
    result = cli(home, project, "add", "claude-code", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"--- {path}" in result.stdout and '+    "redis": {' in result.stdout
    assert "nothing written" in result.stdout
    assert path.read_text() == '{\n  "mcpServers": {}\n}\n' and sorted(project.iterdir()) == before
    created = cli(home, project, "add", "zed", "--global", "--dry-run")
    assert "--- /dev/null" in created.stdout and not (home / ".config").exists()


def test_the_cli_adds_tells_what_is_left_to_do_and_removes(home: Path, project: Path) -> None:
    """The CLI writes the entry with the chosen tool groups and project, says what the editor still needs
    (approval), removes the file it created, and exits 2 on an unknown group or an unparseable file."""
    added = cli(home, project, "add", "claude-code", "--tools", "kv,locks")
    assert added.returncode == 0, added.stderr
    assert "Pending approval" in added.stdout and "/mcp" in added.stdout
    data = json.loads((project / ".mcp.json").read_text())
    assert data["mcpServers"]["redis"]["args"] == [
        "shim", "--agent", "claude-code", "--tools", "kv,locks", "--project", str(project),
    ]  # fmt: skip
    assert "nothing changed" in cli(home, project, "add", "claude-code", "--tools", "kv,locks").stdout
    removed = cli(home, project, "remove", "claude-code")
    assert removed.returncode == 0 and "deleted" in removed.stdout and not (project / ".mcp.json").exists()
    bad = cli(home, project, "add", "cursor", "--tools", "kv,nope")
    assert bad.returncode == 2 and "unknown tool group(s) nope" in bad.stderr
    (project / ".cursor").mkdir()
    (project / ".cursor/mcp.json").write_text("{ nope")
    refused = cli(home, project, "add", "cursor")
    assert refused.returncode == 2 and f"{project}/.cursor/mcp.json:1:3: not valid JSON" in refused.stderr


def test_allow_writes_adds_the_seeds_eight(home: Path) -> None:
    """``--allow-writes`` puts the seed's eight kv tools first in alwaysAllow, followed by the read-only
    tools of the default profile (what the shim serves without --tools)."""
    result = cli(home, home, "add", "kilocode-legacy", "--global", "--allow-writes")
    assert result.returncode == 0, result.stderr
    path = editors.config_path(editors.BY_NAME["kilocode-legacy"], "global", home, None)
    allow = json.loads(path.read_text())["mcpServers"]["redis"]["alwaysAllow"]
    assert allow[:8] == list(tool_groups.SEED_TOOLS)
    assert allow == tool_groups.always_allow(["default"], True)
    assert "session_load" not in allow and "task_get" in allow


def test_a_profile_is_written_as_the_shims_tools_and_its_allow_list_follows(home: Path) -> None:
    """``editor add --tools minimal`` writes ``--tools minimal`` into the shim's args, and alwaysAllow
    holds only the read-only tools the profile selects."""
    result = cli(home, home, "add", "kilocode-legacy", "--global", "--tools", "minimal", "--allow-writes")
    assert result.returncode == 0, result.stderr
    path = editors.config_path(editors.BY_NAME["kilocode-legacy"], "global", home, None)
    server = json.loads(path.read_text())["mcpServers"]["redis"]
    assert server["args"][-2:] == ["--tools", "minimal"]
    assert (
        server["alwaysAllow"]
        == tool_groups.always_allow(["minimal"], True)
        == [
            "task_ready",
            "agent_list",
            "lock_list",
            "message_inbox",
            "files_check",
        ]
    )


def test_an_editor_config_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A repository's kilo.jsonc that is a FIFO (or a device) is refused naming it; reading it
    would wait for a writer for ever."""
    os.mkfifo(tmp_path / "kilo.jsonc")
    with pytest.raises(EditorConfigError, match=r"kilo\.jsonc is a FIFO \(named pipe\)"):
        editors.read_text(tmp_path / "kilo.jsonc")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    with pytest.raises(EditorConfigError, match="is a character device"):
        editors.read_text(tmp_path / "zero.json")
