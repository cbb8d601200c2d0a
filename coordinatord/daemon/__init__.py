"""The daemon: :mod:`~coordinatord.daemon.lifecycle` (start, serve, drain, stop, and the wiring
of the parts), :mod:`~coordinatord.daemon.claim` (which daemon owns a socket path and a state
dir). Imports nothing itself, so the CLI can name it without loading the server."""
