"""The floor for bench/compare.py: an MCP server on stdio that does nothing but answer.

Standard library only, one process, one line read and one line written per request: what any
stdio MCP server costs at the least on this machine (interpreter start, JSON in and out, pipes).
``tools/call`` answers ``OK`` whatever the tool; nothing is stored.
"""

from __future__ import annotations

import json
import sys

TOOLS = [{"name": name, "description": "Echo.", "inputSchema": {"type": "object"}} for name in ("set", "get")]


def answer(message: dict[str, object]) -> dict[str, object] | None:
    method = message.get("method")
    if "id" not in message:
        return None  # a notification
    result: dict[str, object]
    if method == "initialize":
        params = message.get("params")
        version = params.get("protocolVersion") if isinstance(params, dict) else None
        result = {
            "protocolVersion": version or "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "echo", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": "OK"}], "isError": False}
    else:
        result = {}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def main() -> int:
    out = sys.stdout
    for line in sys.stdin:
        reply = answer(json.loads(line))
        if reply is not None:
            out.write(json.dumps(reply, separators=(",", ":")) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
