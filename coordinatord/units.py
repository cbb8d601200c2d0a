"""The two systemd user units, rendered for this install: ``coordinatord.service`` runs the
daemon (``Type=notify``, watchdog, hardening), ``coordinatord.socket`` listens on the daemon's
socket for it (socket activation), so the socket exists whether or not the daemon runs.

``coordinatord service install`` writes them; ``systemd/`` in the repository holds the same
template rendered for a ``pipx install`` (a test keeps the two equal).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from coordinatord.errors import EXIT_ALREADY_RUNNING, EXIT_INVALID_SETTINGS
from coordinatord.systemd import MARKER, SERVICE, SOCKET

WATCHDOG_SEC = 30
"""``WatchdogSec=``: the daemon sends ``WATCHDOG=1`` every half of it while its event loop and
its backend answer."""


def coordinatord_command() -> list[str]:
    """How to run this very install of coordinatord, as absolute paths: the ``coordinatord``
    script this process was started as, else the one beside this interpreter (a venv's bin),
    else ``<python> -m coordinatord``. The path is kept as found, not resolved: pipx's
    ``~/.local/bin/coordinatord`` is a link that survives upgrades, its target may not."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "coordinatord" and os.access(argv0, os.X_OK):
        return [os.path.abspath(argv0)]
    beside = Path(sys.executable).parent / "coordinatord"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "coordinatord"]


def listen_stream(socket_path: Path, uid: int | None = None) -> str:
    """``ListenStream=`` for the socket: ``%t/…`` under ``/run/user/<uid>`` (the user manager's
    runtime dir), the absolute path elsewhere (the ``/tmp/coordinatord-<uid>`` fallback)."""
    uid = os.getuid() if uid is None else uid
    runtime = Path(f"/run/user/{uid}")
    if socket_path.is_relative_to(runtime):
        return "%t/" + _escape_specifiers(str(socket_path.relative_to(runtime)))
    return _escape_specifiers(str(socket_path))


def _escape_specifiers(text: str) -> str:
    return text.replace("%", "%%")


def _exec_word(word: str) -> str:
    """One word of ``ExecStart=``: specifiers escaped, quoted when it holds a space."""
    word = _escape_specifiers(word)
    if any(ch in word for ch in ' \t"\\$;'):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'
    return word


def render_service(command: list[str], *, exec_start: str | None = None) -> str:
    """The service unit running ``command serve`` (``exec_start``: that line as it is written,
    specifiers and all, for the repository's copy)."""
    if exec_start is None:
        exec_start = " ".join(_exec_word(word) for word in [*command, "serve"])
    prevent = f"{EXIT_INVALID_SETTINGS} {EXIT_ALREADY_RUNNING}"
    return f"""\
{MARKER}; it replaces this file when run again.
# Changes that last: `systemctl --user edit {SERVICE}`. docs/service.md explains it all.
#
# The daemon of coordinatord: shared state for AI coding agents, served as MCP tools on a Unix
# socket that {SOCKET} holds open for it (socket activation), so editors' shims reach it
# while it restarts. Settings, the backend included, go in ~/.config/coordinatord/config.toml;
# ~/.config/coordinatord/env (VAR=value lines) is read by this unit only.

[Unit]
Description=coordinatord: shared state for AI coding agents, served as MCP tools
# Started by the socket, or by a shim that found no daemon (systemctl --user start): both ways
# the socket comes first and the daemon serves it.
Wants={SOCKET}
After={SOCKET}
# Bounds a crash loop; the exit statuses below are not retried at all.
StartLimitIntervalSec=60
StartLimitBurst=5

[Service]
# READY=1 once the socket is served and the backend open; STOPPING=1 when the shutdown begins;
# WATCHDOG=1 every WatchdogSec/2 while the event loop and the backend answer a ping.
Type=notify
ExecStart={exec_start}
EnvironmentFile=-%h/.config/coordinatord/env
# Log events go to the JSON-lines file in the state dir; this also sends them, as readable
# lines, to the journal (stderr is not a terminal here, so "auto" would print nothing).
Environment=COORDINATORD_LOGGING__CONSOLE=always
# Not a project directory (no config file is read from the working directory).
WorkingDirectory=%t
WatchdogSec={WATCHDOG_SEC}

Restart=on-failure
RestartSec=2
# Restarting cures neither {EXIT_INVALID_SETTINGS} (invalid settings) nor {EXIT_ALREADY_RUNNING}
# (another daemon owns the socket or the state dir: `coordinatord status` finds it).
RestartPreventExitStatus={prevent}

# SIGTERM: stop accepting, let in-flight calls finish (server.drain_timeout_s, 10 s), then stop
# the embedded Valkey (embedded.stop_timeout_s, 10 s). Only the daemon gets SIGTERM
# (KillMode=mixed): it stops its Valkey child itself, after the drain; anything still left
# when TimeoutStopSec runs out gets SIGKILL.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=30
# Start-up (default limit 90 s) includes replaying the embedded Valkey's AOF, bounded by
# embedded.start_timeout_s (15 s); raise TimeoutStartSec= too if you raise that a lot.

# Hardening that works in a user unit without extra privileges: all of it is seccomp filters,
# prctl flags and the umask, which an unprivileged user manager can apply. SECURITY.md explains
# each choice. Files it creates are the user's alone.
NoNewPrivileges=yes
UMask=0077
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
SystemCallArchitectures=native
# Neither Python nor the embedded Valkey maps memory writable and executable (the daemon and its
# Valkey are tested under the kernel's PR_SET_MDWE, the same rule).
MemoryDenyWriteExecute=yes
# The socket, sd_notify and a unix:// backend; TCP for redis://, rediss:// and Upstash.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallFilter=~@clock @cpu-emulation @debug @module @mount @obsolete @raw-io @reboot @swap
SystemCallErrorNumber=EPERM
# Left off on purpose: each needs a mount namespace, which a user manager makes only through an
# unprivileged user namespace (where the kernel or a distribution's policy forbids those, the
# unit would not start at all: status 226/NAMESPACE).
# - PrivateTmp: without /run/user/<uid> the socket is in /tmp/coordinatord-<uid>/, and editors'
#   shims outside this unit have to reach it.
# - ProtectHome, ProtectSystem=strict: the session archiver and the memory-bank refresh read and
#   write project trees wherever the user keeps them (in $HOME, /srv, /mnt/c on WSL, ...), so
#   no fixed ReadWritePaths= list fits; what the daemon may write is what the user may write.
PrivateTmp=no

[Install]
WantedBy=default.target
Also={SOCKET}
"""


def render_socket(socket_path: Path, uid: int | None = None) -> str:
    return f"""\
{MARKER}; it replaces this file when run again.
# Changes that last: `systemctl --user edit {SOCKET}`. docs/service.md explains it all.
#
# The socket of coordinatord's daemon, held by systemd: a shim's connection starts
# {SERVICE} when it is not running, and waits (instead of failing) while it restarts.

[Unit]
Description=coordinatord socket: editors' shims connect here

[Socket]
# Where every shim, the daemon and the operator commands look by default.
ListenStream={listen_stream(socket_path, uid)}
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""


def render(command: list[str], socket_path: Path, uid: int | None = None) -> dict[str, str]:
    """File name → content, for both units."""
    return {SERVICE: render_service(command), SOCKET: render_socket(socket_path, uid)}


REPOSITORY_EXEC_START = "%h/.local/bin/coordinatord serve"
"""The repository's copy (systemd/) is rendered for ``pipx install``, which puts it there."""


def repository_units() -> dict[str, str]:
    """What systemd/ in the repository holds: the same units, for a ``pipx install`` and the
    runtime dir's socket (``coordinatord service install`` writes the ones for this install)."""
    uid = 1000
    socket_path = Path(f"/run/user/{uid}/coordinatord/coordinatord.sock")
    return {
        SERVICE: render_service([], exec_start=REPOSITORY_EXEC_START),
        SOCKET: render_socket(socket_path, uid),
    }
