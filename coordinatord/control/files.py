"""The ``files_guard`` control command: what the git pre-commit hook (:mod:`coordinatord.guard`)
asks before a commit. Over the control channel, not MCP: the hook must answer in tens of ms."""

from __future__ import annotations

from typing import Any

from coordinatord.app import App
from coordinatord.control.registry import ControlHandler
from coordinatord.errors import FileRefusedError, InvalidArgumentError
from coordinatord.scope import ProjectScope

MAX_STAGED = 100_000


def handlers(app: App) -> dict[str, ControlHandler]:
    async def files_guard(args: dict[str, Any]) -> dict[str, Any]:
        """``{root, paths, agent}`` → ``{project, problem, blocking}``: the exclusive reservations
        of agents other than ``agent`` (anyone's, when it is null) covering the staged paths."""
        root, paths, agent = args.get("root"), args.get("paths"), args.get("agent")
        if not isinstance(root, str) or not root.startswith("/"):
            raise InvalidArgumentError("files_guard: 'root' must be the repository's absolute path")
        if (
            not isinstance(paths, list)
            or not all(isinstance(p, str) for p in paths)
            or len(paths) > MAX_STAGED
        ):
            raise InvalidArgumentError(f"files_guard: 'paths' must be a list of at most {MAX_STAGED} paths")
        if agent is not None and not isinstance(agent, str):
            raise InvalidArgumentError("files_guard: 'agent' must be a name or null")
        # Blocking: reads the repository's config to find its project id, as a shim's does.
        try:
            scope = await app.project_reads.run(root, ProjectScope.of_root, root)
        except FileRefusedError as exc:  # its files did not answer in time
            scope = ProjectScope.unreadable(exc)
        if scope.namespace is None:
            return {"project": None, "problem": scope.missing, "blocking": []}
        blocking = await app.services.files.blocking_commit(scope.namespace, paths, agent or None)
        return {
            "project": scope.namespace.project_id,
            "problem": None,
            "blocking": [hold.model_dump(mode="json") for hold in blocking],
        }

    return {"files_guard": files_guard}
