"""File reservation tools: say which paths you are about to change (see services/files.py), and
the lapse note a holder gets in its next reply once one of its reservations has lapsed."""

from __future__ import annotations

import time
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from coordinatord.context import CallContext, HeldFiles
from coordinatord.errors import BackendError, InvalidArgumentError, ToolError
from coordinatord.services.files import (
    FilesCheckResult,
    FilesListResult,
    FilesReleaseResult,
    FilesRenewResult,
    FilesReserveResult,
)
from coordinatord.tools.registry import Integer, NoArgs, ToolArgs, ToolReply, ToolSpec

GROUP = "files"
LOG_KEY_CHARS = 200

Paths = Annotated[
    list[str],
    Field(description="Project-relative paths or globs"),
]
Id = Annotated[str, Field(description="From files_reserve")]


class FilesReserveArgs(ToolArgs):
    content: ClassVar[frozenset[str]] = frozenset({"reason"})  # FileService.reserve scans it

    paths: Paths
    mode: Literal["exclusive", "shared"] = Field(
        "exclusive", description="shared: other shared holders may too"
    )
    ttl_s: Integer | None = Field(None, description="Lease in seconds", ge=1)
    reason: str = Field("", description="Shown to agents you block")


class FilesIdArgs(ToolArgs):
    id: Id


class FilesRenewArgs(ToolArgs):
    id: Id
    ttl_s: Integer = Field(description="New lease in seconds", ge=1)


class FilesCheckArgs(ToolArgs):
    paths: Paths


def _relative(call: CallContext, paths: list[str]) -> list[str]:
    """Absolute paths inside the project root made relative to it (agents often hold those)."""
    root = call.peer.project_root
    out = []
    for index, path in enumerate(paths):
        if path.startswith("/"):
            if root is None or not (path == root or path.startswith(root.rstrip("/") + "/")):
                raise InvalidArgumentError(
                    f"argument 'paths[{index}]' is absolute and outside the project root "
                    f"{root or '(none)'}: name files relative to it, e.g. src/app.py"
                )
            path = path[len(root.rstrip("/")) + 1 :] or "**"
        out.append(path)
    return out


def _log_key(paths: list[str]) -> str:
    return " ".join(paths)[:LOG_KEY_CHARS]


async def files_reserve(call: CallContext, args: FilesReserveArgs) -> ToolReply:
    paths = _relative(call, args.paths)
    call.log_key = _log_key(paths)
    result = await call.services.files.reserve(
        call.namespace, call.agent, paths, args.mode, args.ttl_s, args.reason
    )
    if result.reserved and result.id is not None and result.expires_in is not None:
        call.peer.file_reservations[result.id] = HeldFiles(
            tuple(result.paths), time.monotonic() + result.expires_in
        )
    return ToolReply.data(result)


async def files_release(call: CallContext, args: FilesIdArgs) -> ToolReply:
    result = await call.services.files.release(call.namespace, call.agent, args.id)
    call.log_key = _log_key(result.paths) or args.id
    if result.reason != "not_yours":
        call.peer.file_reservations.pop(args.id, None)
    return ToolReply.data(result)


async def files_renew(call: CallContext, args: FilesRenewArgs) -> ToolReply:
    call.log_key = args.id
    result = await call.services.files.renew(call.namespace, call.agent, args.id, args.ttl_s)
    held = call.peer.file_reservations.get(args.id)
    if result.renewed and result.expires_in is not None:
        if held is not None:
            held.deadline = time.monotonic() + result.expires_in
    elif result.reason == "not_held":
        call.peer.file_reservations.pop(args.id, None)  # the reply itself says it lapsed
    return ToolReply.data(result)


async def files_check(call: CallContext, args: FilesCheckArgs) -> ToolReply:
    paths = _relative(call, args.paths)
    call.log_key = _log_key(paths)
    return ToolReply.data(await call.services.files.check(call.namespace, paths))


async def files_list(call: CallContext, args: NoArgs) -> ToolReply:
    return ToolReply.data(await call.services.files.reservations(call.namespace))


async def lapse_note(call: CallContext) -> str | None:
    """A line for the reply when a reservation this connection holds has lapsed since it last
    heard of it; ``None`` otherwise. Asks the backend only once the connection's own record
    says a lease ended (another connection of the agent may have renewed it)."""
    held = call.peer.file_reservations
    now = time.monotonic()
    due = [reservation_id for reservation_id, h in held.items() if h.deadline <= now]
    if not due:
        return None
    try:
        left = await call.services.files.left_ms(call.namespace, due)
    except (BackendError, ToolError):
        return None  # said on a later call: the reply in hand must not fail for a note
    now = time.monotonic()
    lapsed = []
    for reservation_id in due:
        if left.get(reservation_id, 0) > 0:
            held[reservation_id].deadline = now + left[reservation_id] / 1000
        else:
            lapsed.append((reservation_id, held.pop(reservation_id)))
    if not lapsed:
        return None
    parts = [
        f"{reservation_id} on {', '.join(h.paths)} ({max(now - h.deadline, 0):.0f} s ago)"
        for reservation_id, h in lapsed
    ]
    return (
        f"coordinatord: your file reservation(s) lapsed: {'; '.join(parts)}. Other agents may change "
        "these files now: files_reserve them again before editing."
    )


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "files_reserve",
        GROUP,
        "Reserve paths or globs before editing them; an overlap is refused, naming the holders.",
        FilesReserveArgs,
        files_reserve,
        output=FilesReserveResult,
    ),
    ToolSpec(
        "files_release",
        GROUP,
        "Release a file reservation of yours.",
        FilesIdArgs,
        files_release,
        idempotent=True,
        output=FilesReleaseResult,
    ),
    ToolSpec(
        "files_renew",
        GROUP,
        "Extend a file reservation; renewed=false means it lapsed.",
        FilesRenewArgs,
        files_renew,
        idempotent=True,
        output=FilesRenewResult,
    ),
    ToolSpec(
        "files_check",
        GROUP,
        "Who holds reservations overlapping these paths, and why.",
        FilesCheckArgs,
        files_check,
        read_only=True,
        idempotent=True,
        output=FilesCheckResult,
    ),
    ToolSpec(
        "files_list",
        GROUP,
        "Every live file reservation.",
        NoArgs,
        files_list,
        read_only=True,
        idempotent=True,
        output=FilesListResult,
    ),
)
