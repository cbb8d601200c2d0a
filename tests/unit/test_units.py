"""The systemd units: rendered for this install, the repository's copy kept equal to the
template, and (where systemd-analyze can run) verified by systemd itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coordinatord import units
from coordinatord.systemd import MARKER, SERVICE, SOCKET

REPO = Path(__file__).resolve().parents[2]


def lines(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def test_the_service_runs_this_coordinatord_by_its_absolute_path() -> None:
    """The service unit starts this install's coordinatord by absolute path, carries our marker and sets
    the notify, watchdog, restart, kill and hardening options the daemon relies on."""
    command = units.coordinatord_command()
    assert Path(command[0]).is_absolute()
    assert command == [str(Path(sys.executable).parent / "coordinatord")] or command[1:] == [
        "-m",
        "coordinatord",
    ]
    service = units.render_service(command)
    assert lines(service, "ExecStart") == [" ".join(command) + " serve"]
    assert service.startswith(MARKER)
    for setting in ("Type=notify", "WatchdogSec=30", "RestartPreventExitStatus=2 10", "KillMode=mixed"):
        assert setting in service.splitlines()
    assert f"Wants={SOCKET}" in service and "NoNewPrivileges=yes" in service


def test_exec_start_words_are_escaped_for_systemd() -> None:
    """A command path with spaces or % is quoted and escaped in ExecStart so systemd runs the right file."""
    service = units.render_service(["/opt/my tools/100%/coordinatord"])
    assert lines(service, "ExecStart") == ['"/opt/my tools/100%%/coordinatord" serve']


def test_listen_stream_uses_the_runtime_dir_specifier_or_the_tmp_fallback() -> None:
    """A socket under the user's runtime directory is written with systemd's %t specifier, a /tmp fallback
    socket as its path, with private socket and directory modes."""
    run = Path("/run/user/1234/coordinatord/coordinatord.sock")
    assert lines(units.render_socket(run, uid=1234), "ListenStream") == ["%t/coordinatord/coordinatord.sock"]
    tmp = Path("/tmp/coordinatord-1234/coordinatord.sock")
    socket_unit = units.render_socket(tmp, uid=1234)
    assert lines(socket_unit, "ListenStream") == [str(tmp)]
    assert "SocketMode=0600" in socket_unit and "DirectoryMode=0700" in socket_unit


def test_the_repositorys_units_are_the_template_rendered_for_pipx() -> None:
    """systemd/ is not edited by hand: it is this, and a change to the template shows here."""
    for name, text in units.repository_units().items():
        assert (REPO / "systemd" / name).read_text() == text, f"regenerate systemd/{name}"


@pytest.fixture
def tmp(short_tmp: Path) -> Path:
    return short_tmp


def test_dry_run_output_passes_systemd_analyze_verify(tmp: Path) -> None:
    """``service install --dry-run`` prints both files; systemd's own checker accepts them."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze on this machine")
    home = tmp / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(tmp)}
    env.pop("COORDINATORD_SOCKET", None)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "coordinatord"), "service", "install", "--dry-run"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (home / ".config").exists()  # a dry run writes nothing
    parts = done.stdout.split("# --- ")
    written = {}
    for part in parts[1:]:
        header, _, body = part.partition("\n")
        if header.endswith((SERVICE, SOCKET)):
            written[Path(header).name] = body
    assert set(written) == {SERVICE, SOCKET}
    assert "systemctl --user enable coordinatord.socket" in done.stdout
    out = tmp / "units"
    out.mkdir()
    for name, body in written.items():
        (out / name).write_text(body)
    # --user resolves %t and %h; it needs a runtime dir, which it is given.
    check = subprocess.run(
        [analyze, "--user", "verify", str(out / SERVICE), str(out / SOCKET)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    said = check.stdout + check.stderr
    if check.returncode != 0 and ("Failed to initialize manager" in said or "bus" in said.lower()):
        pytest.skip(f"systemd-analyze cannot run here: {said.strip()}")
    assert check.returncode == 0, said
    assert said.strip() == "", said


HARDENING = (
    "NoNewPrivileges=yes",
    "UMask=0077",
    "LockPersonality=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "RestrictNamespaces=yes",
    "SystemCallArchitectures=native",
    "MemoryDenyWriteExecute=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "SystemCallErrorNumber=EPERM",
    "PrivateTmp=no",
)
# Each needs a mount namespace (in a user unit, an unprivileged user namespace), or walls off
# the project trees and the /tmp socket the daemon must reach; SECURITY.md says why.
NOT_IN_A_USER_UNIT = ("PrivateTmp=yes", "ProtectHome", "ProtectSystem", "PrivateUsers", "PrivateDevices")


def test_the_service_carries_the_user_unit_hardening() -> None:
    """Both renderings (this install's and the repository's) carry every hardening directive of
    SECURITY.md, a syscall deny-list, and none of the mount-namespace ones that would keep the
    daemon from starting or from the /tmp socket and the project trees."""
    for service in (units.render_service(units.coordinatord_command()), units.repository_units()[SERVICE]):
        settings = [line for line in service.splitlines() if line and not line.startswith("#")]
        for setting in HARDENING:
            assert setting in settings, setting
        (syscalls,) = lines(service, "SystemCallFilter")
        assert syscalls.startswith("~") and {"@mount", "@debug", "@module"} <= set(syscalls[1:].split())
        assert not [line for line in settings if line.startswith(NOT_IN_A_USER_UNIT)]
