"""The shim's own settings: same sources, precedence and bounds as the daemon's, no pydantic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coordinatord import paths
from coordinatord.settings import ServerSettings, ShimSettings, load_settings
from coordinatord.shim.config import ShimConfigError, load


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, with no config file in it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_defaults_match_the_daemons_settings() -> None:
    """With nothing set, the shim runs with the defaults the settings model declares."""
    config = load(None, None, environ={})
    assert config.autostart is ShimSettings().autostart
    assert config.wait_for_daemon_s == ShimSettings().wait_for_daemon_s
    assert config.max_line_bytes == ServerSettings().max_line_bytes
    assert config.socket == paths.default_socket_path() and config.socket_is_default
    assert config.state_dir == load_settings({}, environ={}).state_dir
    assert config.config_file is None


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    """--socket > COORDINATORD_SOCKET > the file's socket; env beats the file for [shim]."""
    file = tmp_path / "c.toml"
    file.write_text(
        'socket = "/f/s.sock"\nstate_dir = "/f/state"\n[shim]\nautostart = false\nwait_for_daemon_s = 3\n'
        "[server]\nmax_line_bytes = 8192\n"
    )
    from_file = load(None, str(file), environ={})
    assert (from_file.socket, from_file.state_dir, from_file.autostart) == (
        Path("/f/s.sock"),
        Path("/f/state"),
        False,
    )
    assert (from_file.wait_for_daemon_s, from_file.max_line_bytes) == (3.0, 8192)
    assert (
        "--socket /f/s.sock" in from_file.serve_command() and f"--config {file}" in from_file.serve_command()
    )
    env = {
        "COORDINATORD_SOCKET": "/e/s.sock",
        "COORDINATORD_STATE_DIR": "/e/state",
        "COORDINATORD_SHIM__AUTOSTART": "true",
        "COORDINATORD_SHIM__WAIT_FOR_DAEMON_S": "0.5",
        "COORDINATORD_CONFIG": str(file),
    }
    from_env = load(None, None, environ=env)
    assert (from_env.socket, from_env.state_dir, from_env.autostart, from_env.wait_for_daemon_s) == (
        Path("/e/s.sock"),
        Path("/e/state"),
        True,
        0.5,
    )
    assert load("/flag.sock", None, environ=env).socket == Path("/flag.sock")
    assert load(None, None, no_autostart=True, environ=env).autostart is False


def test_the_users_config_file_is_read_and_the_cwds_is_not(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~/.config/coordinatord/config.toml counts; a config.toml where the editor started us does not."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text('socket = "/stray.sock"\nbaseURL = "https://example.org/"\n')
    assert load(None, None, environ={}).socket == paths.default_socket_path()
    user = paths.user_config_file()
    user.parent.mkdir(parents=True)
    user.write_text('socket = "/mine.sock"\n')
    assert load(None, None, environ={}).socket == Path("/mine.sock")


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ("[shim]\nwait_for_daemon_s = 0\n", {}, "shim.wait_for_daemon_s"),
        ("[shim]\nwait_for_daemon_s = 601\n", {}, "shim.wait_for_daemon_s"),
        ('[shim]\nwait_for_daemon_s = "soon"\n', {}, "shim.wait_for_daemon_s"),
        ('[shim]\nautostart = "yes"\n', {}, "shim.autostart"),
        ("", {"COORDINATORD_SHIM__AUTOSTART": "maybe"}, "COORDINATORD_SHIM__AUTOSTART"),
        ("", {"COORDINATORD_SHIM__WAIT_FOR_DAEMON_S": "nan"}, "shim.wait_for_daemon_s"),
        ("[server]\nmax_line_bytes = 10\n", {}, "server.max_line_bytes"),
        ("socket = 5\n", {}, "socket"),
        ("shim = 1\n", {}, "[shim]"),
        ("[shim\n", {}, "not valid TOML"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, env: dict[str, str], named: str) -> None:
    """Every bad value stops the shim with a message naming the setting (as the daemon would)."""
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ShimConfigError, match=named.replace("[", r"\[")):
        load(None, str(file), environ=env)


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    """--config naming no file is an error, not a silent default."""
    with pytest.raises(ShimConfigError, match="does not exist"):
        load(None, str(tmp_path / "missing.toml"), environ={})


def test_the_shim_command_parses_without_the_other_commands_modules() -> None:
    """``coordinatord shim ...`` (every editor session runs it) parses its flags with a parser of
    its own: the other commands' modules (the editor targets, settings, pydantic, mcp) are never
    imported on that path, while ``coordinatord --help`` still lists the shim."""
    code = (
        "import sys; from coordinatord import cli, shim; "
        "heavy = ('coordinatord.editors', 'coordinatord.settings', 'pydantic', 'mcp'); "
        # The relay itself is replaced: only the command line's path is under test.
        "shim.main = lambda *a: print(a, sorted(m for m in sys.modules if m.startswith(heavy))) or 0; "
        "cli.main(['shim', '--agent', 'a', '--tools', 'minimal,kv', '--no-autostart'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "(None, 'a', None, ['minimal', 'kv'], None, True) []"
    listed = subprocess.run(
        [sys.executable, "-m", "coordinatord", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "shim" in listed.stdout and "editor" in listed.stdout
