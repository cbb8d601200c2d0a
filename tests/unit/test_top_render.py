"""The ``top`` frame from a fixed ``overview`` document (a pure function), and ``status``'s
colours: no daemon, no terminal."""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest
from rich.console import Console

from coordinatord.commands import status as status_command
from coordinatord.commands.top import frame_text, render, render_down

NOW = 1_796_119_078.0


def overview(**changes: Any) -> dict[str, Any]:
    project = {
        "project_id": "my-app-845bd79b59",
        "root": "/tmp/rd4/my-app",
        "host": "vm",
        "agents": {
            "known": 3,
            "active": 2,
            "more": 0,
            "rows": [
                {
                    "agent": "claude-code",
                    "status": "active",
                    "connected": True,
                    "idle_s": None,
                    "current_task": None,
                    "mode": None,
                },
                {
                    "agent": "cline",
                    "status": "active",
                    "connected": False,
                    "idle_s": 4,
                    "current_task": "docs",
                    "mode": "code",
                },
                {
                    "agent": "kilocode",
                    "status": "inactive",
                    "connected": False,
                    "idle_s": 620,
                    "current_task": None,
                    "mode": None,
                },
            ],
        },
        "locks": {
            "held": 12,
            "more": 11,
            "rows": [
                {
                    "resource": "db:migrations",
                    "held_by": "cline",
                    "fencing": 1795651785874257,
                    "expires_in": 298.2,
                }
            ],
        },
        "tasks": {
            "total": 2,
            "more": 0,
            "rows": [
                {
                    "taskId": "docs",
                    "status": "in_progress",
                    "percentComplete": 33,
                    "currentStep": "write",
                    "totalSteps": 3,
                    "completedSteps": 1,
                    "updatedAt": "2026-12-01T09:00:00.000Z",
                },
                {
                    "taskId": "release",
                    "status": "completed",
                    "percentComplete": 100,
                    "currentStep": "completed",
                    "totalSteps": 2,
                    "completedSteps": 2,
                    "updatedAt": "2026-12-01T08:00:00.000Z",
                },
            ],
        },
        "ratelimits": {
            "total": 1,
            "more": 0,
            "rows": [{"service": "github-api", "window_s": 60, "limit": 10, "used": 3}],
        },
        "activity": {
            "rows": [
                {
                    "ts": NOW - 2,
                    "agent": "cline",
                    "kind": "tool",
                    "name": "lock_acquire",
                    "key": "db:migrations",
                    "outcome": "ok",
                    "duration_ms": 0.4,
                },
                {
                    "ts": NOW - 1,
                    "agent": None,
                    "kind": "job",
                    "name": "heartbeat_sweep",
                    "key": "agent:status:kilocode",
                    "outcome": "agent_inactive",
                    "duration_ms": None,
                },
            ]
        },
        "error": None,
    }
    document: dict[str, Any] = {
        "daemon": {"version": "0.1.0", "pid": 18001, "uptime_s": 33.0, "connections": 2,
                   "backend": "embedded valkey-server at /tmp/rd4/state/valkey.sock"},
        "projects": [project],
        "total": 1,
        "more": 0,
        "now": NOW,
    }  # fmt: skip
    document.update(changes)
    return document


def test_the_frame_shows_every_part_in_80_columns() -> None:
    """The plain frame fits 80 columns and shows the project, the daemon, every agent, lock, task, budget
    and activity row with its details, and the daemon's count of rows it did not send."""
    text = frame_text(overview(), width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert "my-app-845bd79b59" in lines[0] and "/tmp/rd4/my-app" in lines[0]
    assert "daemon 0.1.0 pid 18001" in lines[1]
    assert "Agents  2 active, 3 known" in text
    (cline,) = [line for line in lines if line.startswith("cline ")]
    assert "active" in cline and "4 s ago" in cline and "docs" in cline
    (claude,) = [line for line in lines if line.startswith("claude-code")]
    assert "(connected)" in claude and "never" in claude
    (lock,) = [line for line in lines if line.startswith("db:migrations")]
    assert "cline" in lock and "4 min 58 s" in lock and "1795651785874257" in lock
    assert "+11 more" in text  # the daemon's own count of the locks it did not send
    (docs,) = [line for line in lines if line.startswith("docs ")]
    assert "in_progress" in docs and "1/3 33%" in docs and "write" in docs
    (release,) = [line for line in lines if line.startswith("release ")]
    assert "2/2 100%" in release
    (budget,) = [line for line in lines if line.startswith("github-api")]
    assert "1 min" in budget and "3/10" in budget
    assert any("tool lock_acquire" in line and "db:migrations" in line for line in lines)
    assert any("job heartbeat_sweep" in line and "agent_inactive" in line for line in lines)
    assert "\x1b[" not in text


def test_a_narrow_terminal_drops_the_secondary_columns() -> None:
    """At 50 columns the frame still fits, dropping secondary columns such as the fencing token while
    keeping the names and progress."""
    text = frame_text(overview(), width=50)
    assert max(len(line) for line in text.splitlines()) <= 50, text
    assert "FENCING" not in text and "1795651785874257" not in text
    assert "db:migrations" in text and "cline" in text and "1/3" in text


def test_the_live_view_fits_the_rows_to_the_terminal_and_says_how_to_quit() -> None:
    """The live view fits a 24-row terminal by showing fewer rows and counting the rest, and its footer
    says q quits."""
    out = io.StringIO()
    console = Console(file=out, width=80, height=24, no_color=True)
    console.print(render(overview(), width=80, height=24, interval=1.0))
    text = out.getvalue()
    assert len(text.splitlines()) <= 24, text
    assert "q quits" in text
    assert "+2 more" in text  # agents: the rows the height leaves (one here), a line for the rest


def test_several_projects_each_get_a_title_and_the_rest_is_counted() -> None:
    """With several projects each one shown gets its own title, the header gives the total, and the
    projects not sent are counted."""
    first = overview()["projects"][0]
    second = {**first, "project_id": "docs-ae9ac81b5e", "root": "/tmp/rd4/docs"}
    text = frame_text(overview(projects=[first, second], total=23, more=21), width=80)
    assert "23 projects" in text.splitlines()[0]
    assert "my-app-845bd79b59" in text and "docs-ae9ac81b5e" in text
    assert "+21 more projects" in text


def test_names_cannot_drive_the_terminal() -> None:
    """Escape characters in names stored by agents are shown escaped, so a name cannot clear or move the
    terminal."""
    document = overview()
    document["projects"][0]["locks"]["rows"][0]["resource"] = "evil\x1b[2Jname"
    text = frame_text(document, width=80)
    assert "\x1b" not in text and "evil\\x1b[2Jname" in text


def test_colour_only_when_asked() -> None:
    """The frame carries colour escape codes when colour is asked for."""
    assert "\x1b[" in frame_text(overview(), width=80, colour=True)


def test_an_empty_project_and_a_backend_error_are_said_so() -> None:
    """Empty sections say (none), and a backend error while reading is shown as an incomplete frame with
    the error."""
    empty = overview()["projects"][0] | {
        "agents": {"known": 0, "active": 0, "more": 0, "rows": []},
        "locks": {"held": 0, "more": 0, "rows": []},
        "tasks": {"total": 0, "more": 0, "rows": []},
        "ratelimits": {"total": 0, "more": 0, "rows": []},
        "activity": {"rows": []},
        "error": "backend redis://127.0.0.1:6379/13 could not be reached: Connection refused",
    }
    text = frame_text(overview(projects=[empty]), width=80)
    assert "(none)" in text and "(none used through this daemon)" in text
    assert "incomplete: backend redis://127.0.0.1:6379/13 could not be reached" in text


def clock(skew_s: float | None, *, anchored: bool = True, error: str | None = None) -> dict[str, Any]:
    """A ``daemon.clock`` as the daemon reports it (:class:`coordinatord.clock.ClockState`)."""
    return {
        "source": "backend",
        "anchored": anchored,
        "skew_s": skew_s,
        "max_skew_s": 2.0,
        "skewed": skew_s is not None and abs(skew_s) > 2.0,
        "sample_age_s": 4.0,
        "round_trip_ms": 0.2,
        "error": error,
    }


def test_a_skewed_clock_is_warned_of_under_the_header() -> None:
    """A daemon whose machine's clock is off the backend's by more than daemon.max_clock_skew_s
    gets a warning line under the header, in both directions; within the limit, or from a daemon
    that reports no clock, nothing is said."""
    ahead = overview(daemon={**overview()["daemon"], "clock": clock(7_201.3)})
    lines = frame_text(ahead, width=80).splitlines()
    assert lines[2].startswith("clock: this machine's clock is 2 h ahead of the backend's"), lines[:4]
    nearly = overview(daemon={**overview()["daemon"], "clock": clock(7_199.9996)})  # a reading's error
    assert "clock: this machine's clock is 2 h ahead of the backend's" in frame_text(nearly, width=80)
    behind = overview(daemon={**overview()["daemon"], "clock": clock(-3.5)})
    assert "clock: this machine's clock is 3.5 s behind the backend's" in frame_text(behind, width=200)
    calm = overview(daemon={**overview()["daemon"], "clock": clock(0.4)})
    assert "clock" not in frame_text(calm, width=80).lower().replace("coordinatord", "")
    assert "clock:" not in frame_text(overview(), width=80)
    out = io.StringIO()
    Console(file=out, width=80, height=24, no_color=True).print(
        render(ahead, width=80, height=24, interval=1.0)
    )
    assert len(out.getvalue().splitlines()) <= 24  # the warning's line is counted in the live view


def test_the_frame_while_no_daemon_answers_names_how_to_start_one() -> None:
    """While no daemon answers, the live view shows the message with the command to start one and that it
    retries each interval."""
    out = io.StringIO()
    message = "no coordinatord daemon answers at /tmp/x.sock (No such file or directory)\n" + (
        "start it with: coordinatord serve --socket /tmp/x.sock"
    )
    Console(file=out, width=80, no_color=True).print(render_down(message, interval=1.0))
    text = out.getvalue()
    assert "start it with: coordinatord serve --socket /tmp/x.sock" in text
    assert "retrying every 1 s; q quits" in text


# -- status colours ----------------------------------------------------------------------------

STATUS: dict[str, Any] = {
    "daemon": {"version": "0.1.0", "pid": 1, "uptime_s": 3, "socket": "/tmp/c.sock", "daemon_id": "vm:1:a"},
    "backend": {"name": "embedded", "healthy": True, "ping_ms": 0.3},
    "connections": [{"agent": "cursor", "project": "p-1", "root": "/p", "pid": 7, "claimed_pid": 1}],
    "projects": {"shown": [], "total": 0},
    "jobs": [
        {"name": "heartbeat_sweep", "interval_s": 3, "last_started": 10.0, "last_outcome": "ok",
         "last_duration_ms": 1.0, "last_counts": {}, "next_run": 12.0},
        {"name": "lock_reaper", "interval_s": 60, "last_started": 10.0, "last_outcome": "failed",
         "last_duration_ms": 1.0, "last_counts": {}, "last_error": "boom", "next_run": 70.0},
        {"name": "session_archiver", "interval_s": 10, "last_started": 10.0,
         "last_outcome": "not_leader", "next_run": 20.0},
    ],
}  # fmt: skip


def test_status_colours_healthy_green_unhealthy_red_warnings_yellow() -> None:
    """In colour, ``status`` shows running and healthy in green, failures and an unhealthy backend in red
    and warnings in yellow; without colour it has no escape codes."""
    coloured = status_command.render(STATUS, now=11.0, colour=True)
    assert "\x1b[1;32mis running\x1b[0m" in coloured
    assert "\x1b[32mhealthy\x1b[0m (ping 0.3 ms)" in coloured
    assert "\x1b[33m(claims 1)\x1b[0m" in coloured
    assert "\x1b[32mok\x1b[0m" in coloured and "\x1b[31mfailed\x1b[0m" in coloured
    assert "\x1b[33mlast tick: another daemon is the leader\x1b[0m" in coloured
    down = {**STATUS, "backend": {"name": "x", "healthy": False, "error": "refused"}, "projects": {}}
    assert "\x1b[1;31mUNHEALTHY: refused\x1b[0m" in status_command.render(down, now=11.0, colour=True)
    plain = status_command.render(STATUS, now=11.0)
    assert "\x1b" not in plain and "is running" in plain


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("no_color_flag", "env", "tty", "expected"),
    [
        (False, {}, True, True),
        (True, {}, True, False),
        (False, {"NO_COLOR": "1"}, True, False),
        (False, {"TERM": "dumb"}, True, False),
        (False, {}, False, False),
    ],
)
def test_status_wants_colour_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, no_color_flag: bool, env: dict[str, str], tty: bool, expected: bool
) -> None:
    """Colour is used only on a terminal, and not with ``--no-color``, NO_COLOR or TERM=dumb."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = _Terminal() if tty else io.StringIO()
    args = argparse.Namespace(no_color=no_color_flag)
    assert status_command.wants_colour(args, out) is expected


def test_status_shows_the_daemons_clock_against_the_backends() -> None:
    """``status`` says how far the daemon's machine's clock is from the backend's: in yellow past
    daemon.max_clock_skew_s (with the fix), plainly within it, and when the backend's time was
    never read, that and why."""
    skewed = {**STATUS, "daemon": {**STATUS["daemon"], "clock": clock(-7_200.0)}}
    coloured = status_command.render(skewed, now=11.0, colour=True)
    assert (
        "  clock     \x1b[1;33mthis machine's clock is 2 h behind the backend's (over "
        "daemon.max_clock_skew_s = 2.0 s): expiries use the backend's; sync this machine's "
        "(timedatectl set-ntp true)\x1b[0m"
    ) in coloured
    calm = {**STATUS, "daemon": {**STATUS["daemon"], "clock": clock(0.013)}}
    assert "  clock     within 0.01 s of the backend's\n" in status_command.render(calm, now=11.0)
    never = {**STATUS, "daemon": {**STATUS["daemon"], "clock": clock(None, anchored=False, error="refused")}}
    text = status_command.render(never, now=11.0)
    assert "  clock     the backend's time not read yet (refused); this machine's clock stands in" in text
    assert "  clock " not in status_command.render(STATUS, now=11.0)  # an older daemon: no line
