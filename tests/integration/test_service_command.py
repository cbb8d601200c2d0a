"""``coordinatord service install|uninstall`` into a HOME of the test's, with a fake systemctl on
PATH that records what it was asked (systemd does not run here), run as the real command."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinatord import paths
from coordinatord.systemd import MARKER, SERVICE, SOCKET
from tests import fake_systemctl
from tests.support import COORDINATORD, short_tmpdir


@dataclass
class World:
    root: Path
    home: Path
    state: Path
    env: dict[str, str]

    @property
    def units(self) -> Path:
        return self.home / ".config" / "systemd" / "user"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [COORDINATORD, "service", *args], env=self.env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip

    def calls(self) -> list[list[str]]:
        return fake_systemctl.calls(self.state)


@pytest.fixture
def world() -> Iterator[World]:
    root = short_tmpdir()
    home, state = root / "home", root / "systemctl"
    home.mkdir()
    fake_systemctl.install(root / "bin", state)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COORDINATORD_") and key != "REDIS_URL"
    }
    env.update(HOME=str(home), PATH=f"{root / 'bin'}:{env['PATH']}", FAKE_SYSTEMCTL_DIR=str(state))
    try:
        yield World(root, home, state, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_install_writes_both_units_reloads_and_enables_the_socket(world: World) -> None:
    """``service install --now`` writes marked service and socket units (this coordinatord's path, the
    default socket under %t), reloads systemd and enables the socket; a second install leaves both
    unchanged."""
    done = world.run("install", "--now")
    assert done.returncode == 0, done.stderr
    service = (world.units / SERVICE).read_text()
    socket_unit = (world.units / SOCKET).read_text()
    assert service.startswith(MARKER) and socket_unit.startswith(MARKER)
    assert f"ExecStart={COORDINATORD} serve\n" in service
    listen = paths.default_socket_path()
    expected = str(listen).replace(f"/run/user/{os.getuid()}", "%t", 1)
    assert f"ListenStream={expected}\n" in socket_unit
    assert world.calls()[-2:] == [
        ["--user", "daemon-reload"],
        ["--user", "enable", "--now", SOCKET],
    ]
    assert f"{SOCKET} listens on {listen}" in done.stdout
    again = world.run("install")
    assert again.returncode == 0 and again.stdout.count("unchanged") == 2, again.stdout


def test_the_config_files_socket_is_the_one_listened_on(world: World) -> None:
    """A socket set in the user's config file is the one the socket unit listens on, so shims and systemd
    agree on the path."""
    config = world.home / ".config" / "coordinatord" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'socket = "{world.root}/pinned.sock"\n')
    assert world.run("install").returncode == 0
    assert f"ListenStream={world.root}/pinned.sock\n" in (world.units / SOCKET).read_text()


def test_a_unit_file_we_did_not_write_is_left_unless_forced(world: World) -> None:
    """A hand-made unit file of the same name makes install fail naming ``--force``, with nothing written
    or run; with ``--force`` it is replaced by ours."""
    world.units.mkdir(parents=True)
    hand_made = "[Service]\nExecStart=/usr/local/bin/coordinatord serve\n"
    (world.units / SERVICE).write_text(hand_made)
    refused = world.run("install")
    assert refused.returncode == 1
    assert "--force" in refused.stderr and str(world.units / SERVICE) in refused.stderr
    assert (world.units / SERVICE).read_text() == hand_made
    assert not (world.units / SOCKET).exists()  # nothing at all was written
    assert [call for call in world.calls() if call[1] != "show"] == []
    forced = world.run("install", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (world.units / SERVICE).read_text().startswith(MARKER)


def test_an_older_unit_of_ours_is_replaced(world: World) -> None:
    """A unit carrying our marker but an old ExecStart is rewritten without ``--force``, so upgrades point
    the service at the current binary."""
    world.units.mkdir(parents=True)
    (world.units / SERVICE).write_text(MARKER + "\n[Service]\nExecStart=/old/coordinatord serve\n")
    done = world.run("install")
    assert done.returncode == 0, done.stderr
    assert f"ExecStart={COORDINATORD} serve" in (world.units / SERVICE).read_text()


def test_without_a_user_manager_nothing_is_written_and_auto_start_is_named(world: World) -> None:
    """Where there is no systemd user manager (as on WSL without systemd), install fails quoting
    systemctl's error, points at the shim's auto-start and deploy/wsl.md, and writes no unit."""
    (world.state / "no-manager").touch()
    done = world.run("install", "--now")
    assert done.returncode == 1
    assert "no systemd user manager here" in done.stderr and "No medium found" in done.stderr
    assert "auto-start" in done.stderr and "deploy/wsl.md" in done.stderr
    assert not world.units.exists()


def test_without_systemctl_at_all(world: World) -> None:
    """With no systemctl on PATH install fails (exit 1) saying so and writes no unit."""
    (world.root / "bin" / "systemctl").unlink()
    world.env["PATH"] = str(world.root / "bin")  # coordinatord is called by its full path
    done = world.run("install")
    assert done.returncode == 1 and "there is no systemctl on PATH" in done.stderr
    assert not world.units.exists()


def test_dry_run_writes_and_runs_nothing(world: World) -> None:
    """``install --now --dry-run`` prints the unit files and the systemctl commands it would run, but
    writes no file and runs nothing beyond read-only ``show`` queries."""
    done = world.run("install", "--now", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"# --- {world.units / SERVICE}" in done.stdout
    assert "systemctl --user enable --now coordinatord.socket" in done.stdout
    assert not world.units.exists()
    assert all(call[1:2] == ["show"] for call in world.calls())


def test_uninstall_disables_removes_and_reloads(world: World) -> None:
    """Uninstall disables and stops both units, removes our two files but no other unit, and reloads
    systemd; a second uninstall says there is nothing to uninstall."""
    assert world.run("install", "--now").returncode == 0
    foreign = world.units / "other.service"
    foreign.write_text("[Service]\nExecStart=/bin/true\n")
    done = world.run("uninstall")
    assert done.returncode == 0, done.stderr
    assert not (world.units / SERVICE).exists() and not (world.units / SOCKET).exists()
    assert foreign.exists()
    assert world.calls()[-2:] == [
        ["--user", "disable", "--now", SERVICE, SOCKET],
        ["--user", "daemon-reload"],
    ]
    nothing = world.run("uninstall")
    assert nothing.returncode == 0 and "nothing to uninstall" in nothing.stdout


def test_uninstall_without_a_manager_removes_the_files_and_their_links(world: World) -> None:
    """Without a user manager, uninstall still removes our unit files and the enablement symlinks systemctl
    would have removed, and warns that there is no manager."""
    assert world.run("install").returncode == 0
    wants = world.units / "sockets.target.wants"
    wants.mkdir()
    (wants / SOCKET).symlink_to(world.units / SOCKET)
    (world.state / "no-manager").touch()
    done = world.run("uninstall")
    assert done.returncode == 0, done.stderr
    assert not (world.units / SOCKET).exists() and not (wants / SOCKET).is_symlink()
    assert "no systemd user manager" in done.stderr


def test_stop_under_the_units_stops_socket_and_service_through_systemctl(world: World) -> None:
    """The socket unit listens where `stop` looks and systemd says it is active: both units are
    stopped by systemctl (the service alone would be started again by the next connection)."""
    world.units.mkdir(parents=True)
    socket_path = world.root / "c.sock"
    (world.units / SOCKET).write_text(f"{MARKER}\n[Socket]\nListenStream={socket_path}\n")
    fake_systemctl.set_state(world.state, SOCKET, "enabled", "active", "listening")
    fake_systemctl.set_state(world.state, SERVICE, "disabled", "active", "running")
    done = subprocess.run(
        [COORDINATORD, "stop", "--socket", str(socket_path)],
        env=world.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ["--user", "stop", SOCKET, SERVICE] in world.calls()
    assert f"stopped {SERVICE} and {SOCKET} (systemd)" in done.stdout
