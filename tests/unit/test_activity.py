"""The activity log's pure parts: flush commands, event parsing, and how ``tail`` shows events."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from coordinatord.commands.tail import (
    TailError,
    format_json,
    format_line,
    resolve_project,
)
from coordinatord.keyspace import project_id_for
from coordinatord.services.activity import (
    ActivityEvent,
    append_chunks,
    connection_facts,
    event_from_fields,
)
from coordinatord.tools.activity import TOOLS

TS = 1_771_000_000.25  # 2026-02-13T16:26:40.250Z

TOOL_EVENT = {
    "id": "1771000000250-0",
    "ts": TS,
    "agent": "kilocode",
    "project": "app-0123456789",
    "kind": "tool",
    "name": "redis_set",
    "key": "agent:context:s-1",
    "outcome": "ok",
    "duration_ms": 1.25,
}
CONNECTION_EVENT = {
    **TOOL_EVENT,
    "kind": "connection",
    "name": "connection_opened",
    "key": None,
    "outcome": "pid_mismatch",
    "duration_ms": None,
    "peer_pid": 4242,
    "peer_uid": 1000,
    "claimed_pid": 1,
}
JOB_EVENT = {
    **TOOL_EVENT,
    "agent": "cline",
    "kind": "job",
    "name": "heartbeat_sweep",
    "key": "cline",
    "outcome": "agent_inactive",
    "duration_ms": None,
}


def test_a_flush_groups_events_by_stream_in_order_and_in_chunks() -> None:
    """Each stream's events go out in recording order, at most `size` per call."""
    batch = [("s1", ["1"]), ("s2", ["2"]), ("s1", ["3"]), ("s1", ["4"]), ("s2", ["5"])]
    assert list(append_chunks(batch, 2)) == [
        ("s1", [["1"], ["3"]]),
        ("s1", [["4"]]),
        ("s2", [["2"], ["5"]]),
    ]
    assert list(append_chunks([], 2)) == []


def test_stream_fields_parse_back_into_an_event() -> None:
    """Numbers come back as floats and empty fields as None."""
    flat = ["ts", "1771000000.250", "agent", "", "project", "p", "kind", "job", "name", "heartbeat_sweep"]
    flat += ["key", "k", "outcome", "agent_gone", "duration_ms", ""]
    event = event_from_fields("1-0", dict(zip(flat[::2], flat[1::2], strict=True)))
    assert event == {
        "id": "1-0",
        "ts": 1771000000.25,
        "agent": None,
        "project": "p",
        "kind": "job",
        "name": "heartbeat_sweep",
        "key": "k",
        "outcome": "agent_gone",
        "duration_ms": None,
    }


def test_a_connection_event_reads_back_its_peer() -> None:
    """The extra fields of a connection event come back as integers; other events have none."""
    flat = ["ts", "1771000000.250", "agent", "kilocode", "project", "p", "kind", "connection"]
    flat += ["name", "connection_opened", "key", "", "outcome", "ok", "duration_ms", ""]
    flat += ["peer_pid", "4242", "peer_uid", "1000", "claimed_pid", "4242"]
    event = event_from_fields("1-0", dict(zip(flat[::2], flat[1::2], strict=True)))
    assert (event["peer_pid"], event["peer_uid"], event["claimed_pid"]) == (4242, 1000, 4242)
    shown = ActivityEvent.from_event(event)
    assert shown.connection is not None and shown.connection.peer_pid == 4242
    assert ActivityEvent.from_event(TOOL_EVENT).connection is None


def test_connection_facts_carry_only_what_is_known() -> None:
    """A pid the kernel did not give is left out rather than written as an empty field."""
    assert connection_facts(4242, 1000, 1) == {"peer_pid": "4242", "peer_uid": "1000", "claimed_pid": "1"}
    assert connection_facts(None, None, 7) == {"claimed_pid": "7"}


def test_connection_line_shows_the_peer_and_what_it_claims() -> None:
    """A connection event is kind `conn`, with the kernel's pid and uid where the key would be,
    and the preamble's pid when it differs."""
    line = format_line(CONNECTION_EVENT, colour=False, tz=UTC)
    assert line.split()[2:] == [
        "kilocode", "conn", "connection_opened", "pid_mismatch", "-", "pid", "4242", "uid", "1000",
        "(claims", "1)",
    ]  # fmt: skip
    honest = format_line({**CONNECTION_EVENT, "claimed_pid": 4242, "outcome": "ok"}, colour=False, tz=UTC)
    assert honest.endswith("pid 4242 uid 1000")


def test_a_malformed_number_does_not_break_reading() -> None:
    """An entry written by something else, with junk in a number field, still reads."""
    assert event_from_fields("1-0", {"ts": "soon", "name": "x"})["ts"] is None


def test_tool_result_shows_time_in_iso_8601() -> None:
    """activity_recent shows ts as UTC ISO 8601 with milliseconds, like the other tools."""
    shown = ActivityEvent.from_event(TOOL_EVENT)
    assert shown.ts == "2026-02-13T16:26:40.250Z"
    assert (shown.agent, shown.kind, shown.name, shown.duration_ms) == ("kilocode", "tool", "redis_set", 1.25)


def test_activity_recent_is_read_only_with_a_bounded_limit() -> None:
    """The tool is annotated read-only and idempotent, and its limit starts at 1, default 50."""
    (spec,) = TOOLS
    definition = spec.definition()
    # A read-only tool lists only the hints that differ from MCP's defaults.
    assert definition["annotations"] == {"readOnlyHint": True, "openWorldHint": False}
    assert spec.idempotent
    assert definition["inputSchema"]["properties"]["limit"] == {
        "type": "integer",
        "description": "How many of the newest",
        "minimum": 1,
        "default": 50,
    }
    assert "required" not in definition["inputSchema"]  # none: an empty list is left out
    assert spec.parse_arguments({}).model_dump() == {"limit": 50, "agent": None}


def test_plain_line_has_every_column_and_no_escape_codes() -> None:
    """Without colour a line is plain text: time, agent, kind and name, outcome, duration, key."""
    line = format_line(TOOL_EVENT, colour=False, tz=UTC)
    assert "\x1b" not in line
    assert line.split() == [
        "2026-02-13",
        "16:26:40.250",
        "kilocode",
        "tool",
        "redis_set",
        "ok",
        "1.2",
        "ms",
        "agent:context:s-1",
    ]


def test_job_line_shows_the_action_and_no_duration() -> None:
    """A job action shows the job, the action as outcome and a dash for the duration."""
    line = format_line(JOB_EVENT, colour=False, tz=UTC)
    assert line.split()[2:] == ["cline", "job", "heartbeat_sweep", "agent_inactive", "-", "cline"]


def test_colour_line_uses_ansi_and_says_the_same() -> None:
    """With colour the line carries ANSI codes around the same text."""
    coloured = format_line(TOOL_EVENT, colour=True, tz=UTC)
    assert "\x1b[" in coloured
    stripped = coloured
    for code in ("\x1b[0m", "\x1b[2m", "\x1b[1;36m", "\x1b[34m", "\x1b[32m"):
        stripped = stripped.replace(code, "")
    assert stripped == format_line(TOOL_EVENT, colour=False, tz=UTC)


def test_control_characters_cannot_drive_the_terminal() -> None:
    """An escape sequence in a key or agent name is shown escaped, never sent to the terminal."""
    line = format_line({**TOOL_EVENT, "key": "a\x1b[2Jb", "agent": "x\ny"}, colour=False)
    assert "\x1b" not in line and "\n" not in line
    assert "a\\x1b[2Jb" in line and "x\\x0ay" in line


def test_json_line_carries_the_id_and_an_iso_time() -> None:
    """--json prints one object per event with its stream id and ts in ISO 8601."""
    shown = json.loads(format_json(TOOL_EVENT))
    assert shown == {**TOOL_EVENT, "ts": "2026-02-13T16:26:40.250Z"}


def test_project_default_is_the_git_root_of_the_cwd(tmp_path: Path) -> None:
    """Without --project, tail reads the project a shim started in that directory would use."""
    (tmp_path / ".git").mkdir()
    inner = tmp_path / "src" / "pkg"
    inner.mkdir(parents=True)
    root = str(tmp_path.resolve())
    assert resolve_project(None, inner) == (project_id_for(root), root, "path")


def test_project_directory_is_taken_as_the_root(tmp_path: Path) -> None:
    """--project DIR names that directory's project, as the shim's --project does."""
    (tmp_path / "app").mkdir()
    root = str((tmp_path / "app").resolve())
    assert resolve_project("app", tmp_path) == (project_id_for(root), root, "path")


def test_project_id_is_taken_as_is(tmp_path: Path) -> None:
    """--project ID (as the daemon's log shows it, a path hash or a repository's id) names that project."""
    assert resolve_project("app-0123456789", tmp_path) == ("app-0123456789", None, None)
    assert resolve_project("github.com/org/app", tmp_path) == ("github.com/org/app", None, None)


def test_project_directory_with_an_origin_reads_the_origin_id(tmp_path: Path) -> None:
    """A root whose repository has an origin is read under the id the daemon gives it."""
    (tmp_path / "app" / ".git").mkdir(parents=True)
    (tmp_path / "app" / ".git" / "config").write_text(
        '[remote "origin"]\n\turl = git@github.com:org/app.git\n'
    )
    root = str((tmp_path / "app").resolve())
    assert resolve_project("app", tmp_path) == ("github.com/org/app", root, "origin")


def test_a_wrong_project_file_is_a_usage_error(tmp_path: Path) -> None:
    """A root whose .coordinatord.toml is wrong has no project: tail says which file (exit 2)."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / ".coordinatord.toml").write_text('[project]\nid = "{x}"\n')
    with pytest.raises(TailError, match=r"\.coordinatord\.toml") as caught:
        resolve_project("app", tmp_path)
    assert caught.value.code == 2


@pytest.mark.parametrize("value", ["./missing/dir", "a{b}", "*", "a:b"])
def test_project_that_is_neither_is_refused(tmp_path: Path, value: str) -> None:
    """A --project that is no directory and no valid id is a usage error (exit 2)."""
    with pytest.raises(TailError, match="neither a directory nor a project id") as caught:
        resolve_project(value, tmp_path)
    assert caught.value.code == 2
