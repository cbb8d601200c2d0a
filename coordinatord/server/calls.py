"""Running one tool call: look it up, check its arguments, call it, log it.

Shared by the SDK's ``tools/call`` handler and the server's fast path, so both give the same
results, the same errors and the same log event. On a connection whose shim named no project
(:class:`coordinatord.scope.ProjectScope`), every tool that needs one is refused here, before
it runs. No MCP here.

Secrets: the agent name and every identifier argument (:attr:`ToolSpec.identifiers`) are
scanned first, on the raw arguments, before anything is checked, logged or recorded; a refusal
(``secrets.policy`` refuse or redact) is logged and recorded without them, and under warn the
call runs inside :func:`coordinatord.log_scrub.scrubbing`. The log key a handler sets is shown
redacted too (it can hold content, such as a message's subject). See
:mod:`coordinatord.services.secret_guard`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import structlog

from coordinatord import call_ids
from coordinatord.app import App
from coordinatord.context import CallContext, Peer
from coordinatord.errors import BackendError, SecretFoundError, ToolError
from coordinatord.log_scrub import scrubbing
from coordinatord.services.secret_guard import collect_notes
from coordinatord.tools.files import lapse_note
from coordinatord.tools.registry import ToolReply, ToolSpec

log = structlog.get_logger("coordinatord.calls")


async def invoke(
    app: App, peer: Peer, agent: str, name: str, arguments: dict[str, Any] | None
) -> ToolReply | None:
    """The tool's reply (``is_error`` for refusals and failures), or ``None`` for an unknown tool."""
    spec = app.registry.get(name, peer.groups)
    if spec is None:
        return None
    guard = app.secret_guard
    identifiers = spec.identifier_texts(arguments) if guard.policy != "off" else []
    try:
        guard.check_agent(agent)
        warning = guard.identifiers(identifiers)
    except SecretFoundError as exc:
        return _refused_for_secret(app, peer, guard.shown(agent), name, exc)
    if warning is None:
        return await _run(app, peer, agent, spec, arguments, identifiers)
    # secrets.policy = "warn": the call runs with its identifiers as given; its log lines and
    # activity events show them redacted, and the reply ends with the warning.
    with scrubbing(warning.secrets):
        reply = await _run(app, peer, agent, spec, arguments, identifiers)
    return replace(reply, texts=(*reply.texts, warning.note))


def _refused_for_secret(
    app: App, peer: Peer, shown_agent: str, name: str, exc: SecretFoundError
) -> ToolReply:
    """A call refused for a secret in its agent name or an identifier: logged and recorded with
    neither its key nor its arguments (the refusal's text names the argument and kind only)."""
    scope = peer.scope
    _log_refused(shown_agent, scope.project_id, name, "secret")
    if scope.namespace is not None:
        app.activity.record(scope.namespace, kind="tool", name=name, agent=shown_agent, outcome="refused")
    return ToolReply(texts=(f"{name}: {exc}",), is_error=True)


def _log_refused(agent: str, project: str | None, tool: str, reason: str) -> None:
    """The ``tool_call`` event of a call refused before it ran: no key, no arguments."""
    log.info(
        "tool_call",
        agent=agent,
        project=project,
        tool=tool,
        key=None,
        duration_ms=0.0,
        outcome="refused",
        reason=reason,
    )


async def _run(
    app: App,
    peer: Peer,
    agent: str,
    spec: ToolSpec[Any],
    arguments: dict[str, Any] | None,
    identifiers: list[tuple[str, str]],
) -> ToolReply:
    name = spec.name
    scope = peer.scope
    refusal = scope.refusal(spec.needs_project)
    if refusal is not None:
        # No project: nothing is written (no presence, no activity), only the daemon's log.
        _log_refused(agent, None, name, "no_project")
        return ToolReply(texts=(f"{name}: {refusal}",), is_error=True)
    app.mark_present(peer, agent)
    log.debug("tool_call_started", agent=agent, project=scope.project_id, tool=name)
    call = CallContext(app, peer, agent)
    started = time.perf_counter()
    outcome = "ok"
    call_id: str | None = None
    try:
        # The call's id: each exactly-once script it runs takes the next write id of it, so a
        # resend of that script (by the store, after a lost reply) is recognised and applied once.
        with collect_notes() as secret_notes, call_ids.tool_call() as call_id:
            reply = await spec.handler(call, spec.parse_arguments(arguments))
        if secret_notes:
            # secrets.policy = "warn": the write went through; the caller is told after its reply.
            reply = replace(reply, texts=(*reply.texts, *secret_notes))
    except ToolError as exc:
        outcome = "refused"
        reply = ToolReply(texts=(f"{name}: {exc}",), is_error=True)
    except BackendError as exc:
        outcome = "backend_error"
        reply = ToolReply(texts=(f"{name}: {exc}",), is_error=True)
    except Exception:
        # A bug, not the caller's fault: keep the trace in the log, not in the agent's context.
        log.exception("tool_crashed", tool=name, agent=agent)
        outcome = "internal_error"
        reply = ToolReply(texts=(f"{name}: internal error; see the daemon's log",), is_error=True)
    if peer.file_reservations:
        # Only connections that reserved files pay for this, and only a look at their own
        # record until a lease's end has passed (then one script call).
        note = await lapse_note(call)
        if note is not None:
            reply = replace(reply, texts=(*reply.texts, note))
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    key = call.log_key
    if key is not None and not any(key == text for _, text in identifiers):
        key = app.secret_guard.shown(key)  # not an identifier scanned above: content, maybe
    log.info(
        "tool_call",
        agent=agent,
        project=scope.project_id,
        tool=name,
        key=key,
        duration_ms=duration_ms,
        outcome=outcome,
        call_id=call_id,
    )
    if scope.namespace is None:
        return reply  # a call that needs no project (redis_ping) on an unscoped connection
    app.activity.record(
        scope.namespace,
        kind="tool",
        name=name,
        agent=agent,
        key=key,
        outcome=outcome,
        duration_ms=duration_ms,
    )
    return reply
