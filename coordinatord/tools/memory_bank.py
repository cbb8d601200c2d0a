"""Memory-bank tools: the project's knowledge files from every source of ``memory_bank.sources``
(Kilo Code's ``.kilocode/rules/memory-bank/*.md``, Cline's ``memory-bank/``, ``AGENTS.md``,
``CLAUDE.md``, ``.clinerules``, ``.cursor/rules/*.mdc``), served from the Redis cache (refilled
from disk on a miss). The logic and the confinement to each source are in
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
    file: str = Field(description="e.g. brief.md")


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
        "List the project's knowledge files (memory bank, AGENTS.md, CLAUDE.md, rules); read this first.",
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
        "Read a file memory_bank_index lists.",
        MemoryBankGetArgs,
        memory_bank_get,
        read_only=True,
        idempotent=True,
        title="Read memory-bank file",
        output=FileResult,
    ),
)
