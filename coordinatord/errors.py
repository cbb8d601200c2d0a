"""The one error hierarchy of coordinatord.

::

    CoordinatordError                 anything this package raises on purpose
    ├── ConfigError                   a setting is invalid (names setting, value and source)
    │   ├── ProjectFileError          a file the project id comes from (.coordinatord.toml,
    │   │                             git's config) is wrong or unsafe to read (names the file
    │   │                             and the rule or the fix)
    │   └── UnsafeFolderError         the socket's folder or the state dir is not private to us
    │                                 (names the folder, its owner, its mode and the fix)
    ├── DaemonError                   the daemon cannot start or serve
    │   ├── AlreadyRunningError       another live daemon owns the socket
    │   └── ForeignServerError        another uid serves the socket: nothing was sent to it
    ├── BackendError                  the Redis/Valkey backend failed a command
    │   └── BackendUnavailableError   it could not be reached within the timeout, or it was
    │                                 reached and will not serve us (password, TLS, database);
    │                                 ``kind`` says which, for ``doctor`` and ``status``
    └── ToolError                     a tool call was refused; the message goes to the agent
        ├── InvalidArgumentError      an argument is missing, of the wrong type or out of range
        ├── LimitExceededError        a key, value or count is above a configured limit
        ├── NotFoundError             the session, task, lock… named does not exist
        ├── NoProjectError            the connection's shim named no project (the fix is named)
        ├── ArchiveError              a session archive file cannot be written or read
        ├── FileRefusedError          a project or archive file was not read: not a regular
        │   │                         file, a symlink loop, or too slow (names the file, what
        │   │                         it is, and the fix)
        │   └── FileTooLargeError     … larger than its kind's cap (also a LimitExceededError)
        ├── SecretFoundError          a write holds a secret and secrets.policy = "refuse"
        │                             (names the kind and where, never the value)
        └── ConflictError             the state changed under the call (e.g. a held lock, a
            │                         version that moved on) and the call cannot go ahead
            └── OlderStateError       an archive already holds a later state of the session

Only the tool layer turns these into MCP results; everything below it raises them with a
message a person can act on (it names the key, argument, setting or address involved).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
"""The daemon could not start or keep serving (a backend it needs is down, a state dir it cannot
write...): systemd's unit retries it."""
EXIT_INVALID_SETTINGS = 2
"""A :class:`ConfigError`: retrying cannot help until the settings are fixed."""
EXIT_ALREADY_RUNNING = 10
"""An :class:`AlreadyRunningError`: another daemon owns the socket or the state dir; retrying
cannot help while it runs. 2 and 10 are the unit's ``RestartPreventExitStatus=``."""


class CoordinatordError(Exception):
    """Base class of every error coordinatord raises deliberately."""


class ConfigError(CoordinatordError):
    """A setting is invalid or a config file cannot be read."""


class ProjectFileError(ConfigError):
    """A repository's ``.coordinatord.toml`` cannot be read or breaks the project id rule, or a
    file the id is read from (``.git``, git's config files) is not safe to read (a FIFO, a
    device, a symlink loop, too large). The project it would name has no id until the file is
    fixed; the message names the file."""


class UnsafeFolderError(ConfigError):
    """A folder the daemon would keep its socket or state in is not private to its uid (see
    :mod:`coordinatord.private_folder`). A settings error: retrying cannot help until the folder
    or the setting is changed."""


class DaemonError(CoordinatordError):
    """The daemon cannot start or keep serving."""


class AlreadyRunningError(DaemonError):
    """A live daemon already answers on the socket path."""


class ForeignServerError(DaemonError):
    """The process serving the socket runs as another uid than ours (SO_PEERCRED): a client
    refuses it before sending a byte (see :mod:`coordinatord.socket_trust`). ``finding`` and
    ``fix`` are the message's two parts, for ``doctor``."""

    def __init__(self, finding: str, fix: str) -> None:
        super().__init__(f"{finding}. Fix: {fix}")
        self.finding = finding
        self.fix = fix


class BackendError(CoordinatordError):
    """The backend answered with an error. ``kind`` names the failure in one word, so that
    ``doctor`` and ``status`` can tell apart what the message explains to a person."""

    default_kind = "command"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or self.default_kind


class BackendUnavailableError(BackendError):
    """The backend cannot serve calls: not reached (``refused``, ``timeout``, ``unreachable``),
    or reached and turning us away (``noauth``, ``wrongpass``, ``nopass``, ``noperm``, ``tls``,
    ``no_such_db``). Each message names the setting that fixes it."""

    default_kind = "unreachable"


class ToolError(CoordinatordError):
    """A tool call was refused; ``str(error)`` is shown to the calling agent."""


class InvalidArgumentError(ToolError):
    """An argument is missing, has the wrong type, or is out of range."""


class LimitExceededError(ToolError):
    """A key, value or count is above a configured limit."""


class NotFoundError(ToolError):
    """The session, task, agent or lock named by the call does not exist."""


class NoProjectError(ToolError):
    """The call needs a project and the connection has none: its shim started outside any
    repository and was given no ``--project``. The message names the directory and the fix."""


class ConflictError(ToolError):
    """The call conflicts with the current state (another holder, a newer version, ...)."""


class ArchiveError(ToolError):
    """A session archive could not be written or read; the message names the path and reason."""


class FileRefusedError(ToolError):
    """A file from a project or an archive was not read (:mod:`coordinatord.safe_read`): it is
    a FIFO, a device, a socket, a directory or a symlink loop, it is larger than its cap, or it
    did not answer in time. Callers that have an error of their own for the file (an archive, a
    ``.coordinatord.toml``) wrap it; the message names the file, what it is and the fix."""

    def __init__(self, path: str, problem: str, fix: str) -> None:
        super().__init__(f"{path} {problem}; {fix}")
        self.path = path
        self.problem = problem
        self.fix = fix


class FileTooLargeError(FileRefusedError, LimitExceededError):
    """The file is larger than its kind's cap (the message names the setting or rule)."""


class SecretFoundError(ToolError):
    """A value to be written holds a secret (``secrets.policy = "refuse"``); nothing was
    written. ``findings``: ``(kind, field, offset)`` of each, for tests and logs: never the text."""

    def __init__(self, message: str, findings: tuple[tuple[str, str, int], ...]) -> None:
        super().__init__(message)
        self.findings = findings


class OlderStateError(ConflictError):
    """The archive file already holds a later state of the session; it was left as it is."""
