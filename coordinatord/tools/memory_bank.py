"""Memory-bank tools: the project's ``.kilocode/rules/memory-bank/*.md`` files, served from the
Redis cache (refilled from disk on a miss). The logic and the confinement to the folder are in
:mod:`coordinatord.services.memory_bank`; these only map arguments and results.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from coordinatord.context import CallContext
from coordinatord.services.memory_bank import FileResult, IndexResult
from coordinatord.tools.registry import NoArgs, ToolArgs, ToolReply, ToolSpec

GROUP = "memory_bank"


class MemoryBankGetArgs(ToolArgs):
    # Which names are allowed (no paths, .md) is the service's confinement rule.
    file: str = Field(description="File name in the memory-bank folder, e.g. brief.md (no paths)")


async def memory_bank_index(call: CallContext, args: NoArgs) -> ToolReply:
    call.log_key = "index"
    result = await call.services.memory_bank.index(call.namespace, call.peer.project_root)
    return ToolReply.data(result)


async def memory_bank_get(call: CallContext, args: MemoryBankGetArgs) -> ToolReply:
    call.log_key = args.file
    result = await call.services.memory_bank.get(call.namespace, call.peer.project_root, args.file)
    return ToolReply.data(result)


TOOLS: tuple[ToolSpec[Any], ...] = (
    ToolSpec(
        "memory_bank_index",
        GROUP,
        "List the project's memory-bank files (.kilocode/rules/memory-bank/*.md: brief, product, "
        "context, architecture, tech ...) with their hashes and sizes; read this first to know what "
        "project knowledge exists.",
        NoArgs,
        memory_bank_index,
        read_only=True,
        idempotent=True,
        title="List memory-bank files",
        output=IndexResult,
    ),
    ToolSpec(
        "memory_bank_get",
        GROUP,
        "Read one memory-bank file (e.g. brief.md or context.md) to load the project's shared "
        "knowledge; served from the cache, read from disk on a miss.",
        MemoryBankGetArgs,
        memory_bank_get,
        read_only=True,
        idempotent=True,
        title="Read memory-bank file",
        output=FileResult,
    ),
)
