"""The server role: connections on the daemon's socket, from their bytes to a tool's reply.

In the order a line goes through it: :mod:`~coordinatord.server.sockio` (a connection's bytes),
:mod:`~coordinatord.server.front_door` (accepts, reads the first line: preamble, control
request or MCP traffic), :mod:`~coordinatord.server.line_reader` and
:mod:`~coordinatord.server.framing` (each line decoded once into a frame),
:mod:`~coordinatord.server.relay` (a connection's frames, its requests not yet answered),
:mod:`~coordinatord.server.fastpath` or :mod:`~coordinatord.server.mcp_session` (the SDK), both
through :mod:`~coordinatord.server.calls` to the tools. :mod:`~coordinatord.server.connections`
and :mod:`~coordinatord.server.in_flight` keep what a shutdown waits for.

Imports nothing itself: importing one module of the package costs only that module.
"""
