"""Call and write ids (coordinatord/call_ids.py): each write of a call gets the next id of that
call, tasks the call starts share its counter, and ids never repeat across calls."""

from __future__ import annotations

import anyio
import pytest

from coordinatord import call_ids


def test_the_writes_of_one_call_are_numbered_in_order() -> None:
    """Two script invocations in one call get two distinct write ids of that call; the next call
    starts its own count under a new call id."""
    with call_ids.tool_call() as first:
        assert call_ids.current_call_id() == first
        ids = [call_ids.next_write_id() for _ in range(3)]
    assert ids == [f"{first}.1", f"{first}.2", f"{first}.3"]
    with call_ids.tool_call() as second:
        assert call_ids.next_write_id() == f"{second}.1"
    assert second != first and call_ids.current_call_id() is None


def test_outside_a_call_every_write_has_an_id_of_its_own() -> None:
    """A job's script calls (no tool call running) never share an id."""
    ids = {call_ids.next_write_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(write_id.startswith(call_ids.PROCESS_TOKEN + "-") for write_id in ids)


@pytest.mark.anyio
async def test_tasks_started_by_a_call_share_its_count() -> None:
    """Writes run concurrently by one call (a task group) still get distinct ids of that call."""
    got: list[str] = []

    async def write() -> None:
        await anyio.lowlevel.checkpoint()
        got.append(call_ids.next_write_id())

    with call_ids.tool_call() as call_id:
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(write)
    assert sorted(got) == sorted(f"{call_id}.{n}" for n in range(1, 6))
