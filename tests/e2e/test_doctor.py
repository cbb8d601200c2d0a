"""`coordinatord doctor` against real setups: a healthy embedded daemon, the seed's NOAUTH story
(a requirepass Valkey with no password, or a wrong one), a closed port, a malformed URL, a
stopped daemon, a REDIS_URL only this shell has, an editor config. Each with its exit code and,
in --json, the fix named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.conftest import PROTECTED_PASSWORD
from tests.support import (
    COORDINATORD,
    ValkeyProcess,
    free_tcp_port,
    running_daemon,
    short_tmpdir,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PASSWORD = PROTECTED_PASSWORD


@pytest.fixture
def home() -> Iterator[Path]:
    """A user's home with a project in it; the config file names a socket and state dir of the
    test's own (never the real default ones)."""
    path = short_tmpdir("doc-")
    (path / "project" / ".git").mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_config(home: Path, socket_path: Path, state_dir: Path, extra: str = "") -> None:
    config = home / ".config" / "coordinatord" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'socket = "{socket_path}"\nstate_dir = "{state_dir}"\n{extra}')


def environment(home: Path, **extra: str) -> dict[str, str]:
    # What a user's shell has, minus anything of this test run's own coordinatord settings.
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "USER": "tester"}
    env.update(extra)
    return env


async def doctor(home: Path, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [COORDINATORD, "doctor", "--json", *args],
            env=environment(home, **env),
            cwd=home / "project",
            check=False,
        )
    report = json.loads(done.stdout)
    assert report["ok"] is (done.returncode == 0), done.stderr
    return done.returncode, report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


async def test_a_healthy_embedded_daemon(home: Path) -> None:
    """With a running daemon on the embedded Valkey the daemon, backend, socket, environment and Valkey
    checks pass and doctor exits 0; the editors check only warns, with ``editor add`` as its fix."""
    with running_daemon({"HOME": str(home)}) as daemon:
        write_config(home, daemon.socket_path, daemon.state_dir)
        code, report = await doctor(home)
    checks = by_name(report)
    assert code == 0, report
    assert checks["daemon"]["status"] == "ok" and checks["daemon"]["details"]["running"] is True
    assert checks["backend"]["status"] == "ok" and "embedded" in checks["backend"]["summary"]
    assert checks["socket"]["status"] == "ok" and checks["environment"]["status"] == "ok"
    assert checks["settings"]["details"]["config_file"] == str(home / ".config/coordinatord/config.toml")
    assert checks["embedded valkey"]["status"] == "ok"
    assert checks["editors"]["status"] == "warn" and "editor add" in checks["editors"]["fix"]


async def test_a_stopped_daemon_is_fine_with_autostart_and_broken_without(home: Path) -> None:
    """A daemon that is not running is fine while shims may start it, but with ``shim.autostart = false``
    it is a failure (exit 1) whose fix is the exact ``coordinatord serve --socket`` command."""
    write_config(home, home / "nothing.sock", home / "state")
    code, report = await doctor(home)
    assert code == 0 and by_name(report)["daemon"]["details"]["running"] is False
    write_config(home, home / "nothing.sock", home / "state", "[shim]\nautostart = false\n")
    code, report = await doctor(home)
    daemon = by_name(report)["daemon"]
    assert code == 1 and daemon["status"] == "fail"
    assert f"coordinatord serve --socket {home / 'nothing.sock'}" in daemon["fix"]


@pytest.mark.parametrize(
    ("password", "kind", "said"),
    [("", "noauth", "needs a password (NOAUTH)"), ("wrong", "wrongpass", "refused the password (WRONGPASS")],
)
async def test_a_password_protected_redis(
    protected: ValkeyProcess, home: Path, password: str, kind: str, said: str
) -> None:
    """No password or a wrong one against a requirepass Valkey fails the backend check as NOAUTH or
    WRONGPASS, with the URL form to copy as the fix, never the password, and the listener named from /proc."""
    credentials = f":{password}@" if password else ""
    url = f"redis://{credentials}127.0.0.1:{protected.tcp_port}/0"
    write_config(home, home / "c.sock", home / "state", f'[backend]\nurl = "{url}"\n')
    code, report = await doctor(home)
    backend = by_name(report)["backend"]
    assert code == 1
    assert backend["status"] == "fail" and backend["details"]["kind"] == kind
    assert said in backend["summary"]
    assert f"redis://:PASSWORD@127.0.0.1:{protected.tcp_port}/0" in backend["fix"]
    # The password given is never shown (only the placeholder form is).
    assert f":{password}@" not in json.dumps(report) or not password
    # Who answers on that port, named from /proc: the server that wanted the password.
    listeners = by_name(report)["listeners"]
    assert "valkey-server" in listeners["summary"] or sys.platform != "linux"


async def test_the_right_password_and_the_clock(protected: ValkeyProcess, home: Path) -> None:
    """With the right password in the URL the backend and clock checks pass and doctor exits 0, and the
    password appears nowhere in the JSON report."""
    url = f"redis://:{PASSWORD}@127.0.0.1:{protected.tcp_port}/0"
    write_config(home, home / "c.sock", home / "state", f'[backend]\nurl = "{url}"\n')
    code, report = await doctor(home)
    checks = by_name(report)
    assert code == 0, report
    assert checks["backend"]["status"] == "ok" and checks["clock"]["status"] == "ok"
    assert PASSWORD not in json.dumps(report)


async def test_a_closed_port(home: Path) -> None:
    """A backend URL on a port nothing listens on is reported as refused, and the listeners check says so
    and suggests leaving backend.url empty to use the embedded Valkey."""
    port = free_tcp_port()
    write_config(home, home / "c.sock", home / "state", f'[backend]\nurl = "redis://127.0.0.1:{port}/0"\n')
    code, report = await doctor(home)
    checks = by_name(report)
    assert code == 1
    assert checks["backend"]["details"]["kind"] == "refused"
    assert (
        checks["listeners"]["status"] == "fail"
        and f"nothing listens on TCP port {port}" in (checks["listeners"]["summary"])
    )
    assert "leave backend.url empty" in checks["listeners"]["fix"]


async def test_a_malformed_url_is_a_settings_failure(home: Path) -> None:
    """A malformed backend.url in the config file fails the settings check (exit 1), saying what is wrong
    with the URL and pointing the fix at that config file."""
    write_config(home, home / "c.sock", home / "state", '[backend]\nurl = "redis://127.0.0.1:notaport/0"\n')
    code, report = await doctor(home)
    settings = by_name(report)["settings"]
    assert code == 1
    assert settings["status"] == "fail" and "has port 'notaport'" in settings["summary"]
    assert str(home / ".config/coordinatord/config.toml") in settings["fix"]


async def test_a_redis_url_only_this_shell_has(protected: ValkeyProcess, home: Path) -> None:
    """The brief's trap: REDIS_URL exported in a shell is stripped by editors, so a daemon a shim
    starts would run on the embedded Valkey instead."""
    write_config(home, home / "c.sock", home / "state")
    url = f"redis://:{PASSWORD}@127.0.0.1:{protected.tcp_port}/0"
    code, report = await doctor(home, REDIS_URL=url)
    environment_check = by_name(report)["environment"]
    assert code == 0
    assert environment_check["status"] == "warn"
    assert "REDIS_URL is set in this shell" in environment_check["summary"]
    assert "another backend" in environment_check["summary"] and "[backend] url" in environment_check["fix"]
    assert PASSWORD not in json.dumps(report)


async def test_a_socket_only_this_shell_has(home: Path) -> None:
    """COORDINATORD_SOCKET set in the shell to something other than the config file's socket fails the
    socket check, naming both paths, since editors would start shims on the config file's one."""
    write_config(home, home / "c.sock", home / "state")
    code, report = await doctor(home, COORDINATORD_SOCKET=str(home / "other.sock"))
    socket_check = by_name(report)["socket"]
    assert code == 1 and socket_check["status"] == "fail"
    assert (
        str(home / "other.sock") in socket_check["summary"]
        and str(home / "c.sock") in socket_check["summary"]
    )


async def test_an_editor_config_is_found_and_a_broken_one_named(home: Path) -> None:
    """An entry written by ``editor add cursor`` passes its editor check; once its command points at a
    missing binary the check fails (exit 1) with ``editor add cursor --force`` as the fix."""
    with running_daemon({"HOME": str(home)}) as daemon:
        write_config(home, daemon.socket_path, daemon.state_dir)
        with anyio.fail_after(60):
            added = await anyio.run_process(
                [COORDINATORD, "editor", "add", "cursor", "--global"], env=environment(home), check=False
            )
        assert added.returncode == 0, added.stderr
        code, report = await doctor(home)
        assert code == 0, report
        assert by_name(report)["editor cursor"]["status"] == "ok"
        broken = home / ".cursor" / "mcp.json"
        broken.write_text(broken.read_text().replace(COORDINATORD, str(home / "moved" / "coordinatord")))
        code, report = await doctor(home)
    editor = by_name(report)["editor cursor"]
    assert code == 1 and editor["status"] == "fail" and "editor add cursor --force" in editor["fix"]


def test_the_readable_report_marks_and_fixes(home: Path) -> None:
    """Without --json: one line per check with ✓/!/✗, a fix line under each problem, a total."""
    write_config(home, home / "c.sock", home / "state", '[backend]\nurl = "redis://127.0.0.1:1/0"\n')
    done = subprocess.run(
        [COORDINATORD, "doctor"], env=environment(home), cwd=home / "project", capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("✗ backend") for line in lines)
    assert any(line.strip().startswith("fix: ") for line in lines)
    assert "\033[" not in done.stdout  # not a terminal: no colour
    assert lines[-1].endswith("broken")
