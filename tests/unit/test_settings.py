"""Settings: precedence, config file discovery, errors that name setting, value and source."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from coordinatord.errors import ConfigError
from coordinatord.paths import default_socket_path
from coordinatord.settings import effective_settings, load_settings
from tests.support import COORDINATORD


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_precedence_cli_over_env_over_seed_env_over_file_over_default(tmp_path: Path) -> None:
    """Each source overrides the ones below it, setting by setting."""
    config = write(
        tmp_path / "c.toml",
        'socket = "/file.sock"\nstate_dir = "/file-state"\n'
        '[backend]\nurl = "redis://file:6379/0"\nretries = 7\nconnect_timeout_s = 9.0\n',
    )
    env = {
        "COORDINATORD_SOCKET": "/env.sock",
        "COORDINATORD_BACKEND__RETRIES": "5",
        "REDIS_URL": "redis://seed:6379/1",
    }
    settings = load_settings({"socket": "/cli.sock"}, config_file=str(config), environ=env)
    assert settings.socket == Path("/cli.sock")  # CLI beats env and file
    assert settings.backend.retries == 5  # env beats file
    assert settings.backend.url.get_secret_value() == "redis://seed:6379/1"  # REDIS_URL beats file
    assert settings.state_dir == Path("/file-state")  # file beats default
    assert settings.backend.connect_timeout_s == 9.0
    assert settings.backend.timeout_s == 3.0  # default


def test_prefixed_env_beats_seed_env() -> None:
    """COORDINATORD_BACKEND__URL wins over the seed's unprefixed REDIS_URL."""
    env = {"REDIS_URL": "redis://seed:6379/1", "COORDINATORD_BACKEND__URL": "redis://mine:6379/2"}
    settings = load_settings({}, environ=env)
    assert settings.backend.url.get_secret_value() == "redis://mine:6379/2"


def test_defaults_ignore_variables_an_editor_may_strip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Socket and state dir come from the uid and HOME, whatever XDG_* variables say: an MCP
    client strips them from the shim's environment and from a daemon the shim starts."""
    monkeypatch.setenv("HOME", str(tmp_path))
    env = {"XDG_RUNTIME_DIR": "/run/user/7", "XDG_STATE_HOME": "/st", "XDG_CONFIG_HOME": str(tmp_path)}
    with_xdg, without = load_settings({}, environ=env), load_settings({}, environ={})
    assert with_xdg.socket == without.socket == default_socket_path()
    assert with_xdg.state_dir == without.state_dir == tmp_path / ".local" / "state" / "coordinatord"
    assert with_xdg.uses_embedded_backend


def test_config_file_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config, then $COORDINATORD_CONFIG, then ~/.config/coordinatord/config.toml; a
    config.toml in the working directory is never read (it is some other program's)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "config.toml", 'baseURL = "https://example.org/"\n[backend]\nretries = 2\n')
    assert load_settings({}, environ={}).backend.retries == 3  # the default: ./config.toml unread
    user = tmp_path / "home" / ".config" / "coordinatord"
    user.mkdir(parents=True)
    write(user / "config.toml", "[backend]\nretries = 1\n")
    assert load_settings({}, environ={"XDG_CONFIG_HOME": "/elsewhere"}).backend.retries == 1
    named = write(tmp_path / "named.toml", "[backend]\nretries = 5\n")
    assert load_settings({}, environ={"COORDINATORD_CONFIG": str(named)}).backend.retries == 5
    flag = write(tmp_path / "flag.toml", "[backend]\nretries = 4\n")
    env_named = {"COORDINATORD_CONFIG": str(named)}
    assert load_settings({}, config_file=str(flag), environ=env_named).backend.retries == 4


def test_invalid_values_name_setting_value_and_source(tmp_path: Path) -> None:
    """Every bad value is reported with its dotted name, the value, and where it came from."""
    config = write(tmp_path / "c.toml", '[limits]\nmax_key_bytes = 5\ntypo = 1\n[backend]\ntimeout_s = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config_file=str(config), environ={"COORDINATORD_BACKEND__RETRIES": "many"})
    message = str(caught.value)
    assert f"limits.max_key_bytes = 5 (from config file {config})" in message
    assert "limits.typo = 1" in message and "no such setting" in message
    assert "backend.timeout_s = 'x'" in message
    assert "backend.retries = 'many' (from environment variable COORDINATORD_BACKEND__RETRIES)" in message


def test_bad_url_scheme_is_reported_without_revealing_it() -> None:
    """A REDIS_URL with an unknown scheme is refused, shown with its password masked."""
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ={"REDIS_URL": "http://user:hunter2@host"})
    message = str(caught.value)
    assert "backend.url = 'http://user:***@host' (from environment variable REDIS_URL)" in message
    assert "must start with redis://, rediss:// or unix://" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://:hunter2@127.0.0.1:notaport/0", "has port 'notaport'"),
        ("redis://127.0.0.1:6379/abc", "has '/abc' as its path"),
        ("redis://127.0.0.1:6379/0?db=two", "has db='two'"),
        ("rediss://host:70000", "has port '70000'"),
    ],
)
def test_malformed_url_is_a_settings_error(url: str, named: str) -> None:
    """What redis-py would crash on (a port that is not a number) or silently misread (a
    database that is not one: db 0) is refused when settings load, so every command that reads
    them (serve, tail, config, doctor) exits 2 with the reason."""
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ={"REDIS_URL": url})
    message = str(caught.value)
    assert named in message
    assert "hunter2" not in message


def test_missing_and_broken_config_files(tmp_path: Path) -> None:
    """A named config file that is missing, or not TOML, stops start-up with its path."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, config_file=str(tmp_path / "nope.toml"), environ={})
    broken = write(tmp_path / "broken.toml", "[backend\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, config_file=str(broken), environ={})


def test_effective_settings_mask_secrets() -> None:
    """The printed settings never show passwords or tokens."""
    settings = load_settings(
        {}, environ={"REDIS_URL": "rediss://u:pa55@h:6380/2", "UPSTASH_REDIS_REST_TOKEN": "tok"}
    )
    shown = json.dumps(effective_settings(settings))
    assert "pa55" not in shown and 'tok"' not in shown
    assert "rediss://u:***@h:6380/2" in shown


def test_config_command_prints_settings_and_fails_on_bad_ones(tmp_path: Path) -> None:
    """`coordinatord config` prints the effective settings and names the file they came from; a
    bad value exits 2 with the reason."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COORDINATORD_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").touch()

    def config(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [COORDINATORD, "config", *args]
        return subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, check=False)

    ok = config("--socket", "/x.sock")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["socket"] == "/x.sock"
    # Which file was read: the first line on stderr, and the first key of the JSON.
    assert ok.stderr.splitlines()[0] == f"coordinatord: config file: {tmp_path / 'none.toml'}"
    assert next(iter(json.loads(ok.stdout))) == "config_file"
    without = config(COORDINATORD_CONFIG="")
    assert without.stderr.startswith(
        "coordinatord: config file: none (defaults and environment; it would be "
    )
    assert json.loads(without.stdout)["config_file"] is None
    bad = config(COORDINATORD_SERVER__MAX_CONNECTIONS="0")
    assert bad.returncode == 2
    assert (
        "server.max_connections = '0' (from environment variable COORDINATORD_SERVER__MAX_CONNECTIONS)"
        in bad.stderr
    )


def test_project_roots_must_be_absolute_and_are_resolved(tmp_path: Path) -> None:
    """[[projects]] roots are absolute (or ~) and resolved like the shim's --project."""
    config = write(tmp_path / "c.toml", '[[projects]]\nroot = "relative/app"\n')
    with pytest.raises(ConfigError, match=r"projects\.0\.root = 'relative/app'.*absolute"):
        load_settings({}, config_file=str(config), environ={})
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    config = write(tmp_path / "c2.toml", f'[[projects]]\nroot = "{tmp_path / "link"}"\n')
    settings = load_settings({}, config_file=str(config), environ={})
    assert settings.projects[0].root == (tmp_path / "real").resolve()


def test_session_ttl_above_the_session_ceiling_is_refused_naming_both(tmp_path: Path) -> None:
    """sessions.ttl_s may not exceed sessions.max_ttl_s (default 30 days); the error says where
    each of the two came from."""
    assert load_settings({}, environ={}).sessions.max_ttl_s == 30 * 86_400
    config = write(tmp_path / "c.toml", "[sessions]\nttl_s = 7200\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config_file=str(config), environ={"COORDINATORD_SESSIONS__MAX_TTL_S": "3600"})
    assert str(caught.value).splitlines()[1] == (
        "  sessions: Value error, sessions.ttl_s = 7200 is above sessions.max_ttl_s = 3600; raise "
        f"sessions.max_ttl_s or lower sessions.ttl_s (sessions.ttl_s from config file {config}; "
        "sessions.max_ttl_s from environment variable COORDINATORD_SESSIONS__MAX_TTL_S)"
    )
    same = load_settings({}, environ={"COORDINATORD_SESSIONS__MAX_TTL_S": "86400"})
    assert (same.sessions.ttl_s, same.sessions.max_ttl_s) == (86_400, 86_400)


@pytest.mark.parametrize(("value", "ok"), [("0", False), ("1", True), ("10000", True), ("10001", False)])
def test_memory_bank_max_files_bounds(value: str, ok: bool) -> None:
    """memory_bank.max_files is 1 to 10000; outside that start-up stops naming the setting."""
    environ = {"COORDINATORD_MEMORY_BANK__MAX_FILES": value}
    if ok:
        assert load_settings({}, environ=environ).memory_bank.max_files == int(value)
    else:
        with pytest.raises(ConfigError, match=rf"memory_bank\.max_files = '{value}' \(from environment"):
            load_settings({}, environ=environ)


def test_a_misspelt_setting_gets_a_suggestion(tmp_path: Path) -> None:
    """An unknown setting in the config file stops loading with its name, value and source, and a
    did-you-mean suggestion only where a close name exists."""
    config = tmp_path / "config.toml"
    config.write_text("[loging]\nlevel = 'debug'\n[server]\nmax_conections = 3\nzzz = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config_file=str(config), environ={})
    message = str(caught.value)
    assert "server.max_conections = 3" in message
    assert "no such setting; did you mean `server.max_connections`?" in message
    assert "no such setting; did you mean `logging`?" in message
    # Nothing close: no guess.
    assert "server.zzz = 1" in message and "zzz = 1 (from config file " in message
    assert message.count("did you mean") == 2


def test_a_variable_naming_no_section_is_refused_like_a_file_typo() -> None:
    """A ``COORDINATORD_<SECTION>__<KEY>`` variable whose section does not exist stops loading
    with its name and a suggestion, instead of being ignored; variables that are not settings
    (COORDINATORD_GUARD) and known sections pass."""
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ={"COORDINATORD_LOGING__LEVEL": "debug", "COORDINATORD_GUARD": "off"})
    message = str(caught.value)
    assert "loging.level = 'debug' (from environment variable COORDINATORD_LOGING__LEVEL)" in message
    assert "no such setting; did you mean `logging`?" in message
    assert "COORDINATORD_GUARD" not in message
    assert load_settings({}, environ={"COORDINATORD_LOGGING__LEVEL": "debug"}).logging.level == "debug"


def test_settings_say_which_config_file_they_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded settings record the config file they were read from (None when there is none), and the
    effective settings show it."""
    config = tmp_path / "config.toml"
    config.write_text("[server]\nmax_connections = 3\n")
    assert load_settings({}, config_file=str(config), environ={}).config_file == config
    monkeypatch.setenv("HOME", str(tmp_path))  # a home without ~/.config/coordinatord/config.toml
    assert load_settings({}, environ={}).config_file is None
    assert effective_settings(load_settings({}, config_file=str(config), environ={}))["config_file"] == str(
        config
    )
