"""The operator's control channel: one request line, one reply line, over the daemon's socket.

Both sides live here. The client (:mod:`coordinatord.control.client`, re-exported below, with
the request line of :mod:`coordinatord.control.wire`) is standard library only, and this module
imports nothing else: ``coordinatord status`` and the other operator commands must start fast
and work while the daemon or its backend is down. The daemon's side is the submodules the
daemon imports itself: :mod:`~coordinatord.control.registry` (the commands by name and their
replies), :mod:`~coordinatord.control.handlers` (which commands a daemon answers),
:mod:`~coordinatord.control.status`, :mod:`~coordinatord.control.sessions`,
:mod:`~coordinatord.control.projects`, :mod:`~coordinatord.control.overview` and
:mod:`~coordinatord.control.shutdown`.
"""

from coordinatord.control.client import DaemonNotRunningError, request
from coordinatord.errors import DaemonError

__all__ = ["DaemonError", "DaemonNotRunningError", "request"]
