"""A stand-in for ``systemctl`` on PATH: systemd does not run in the test machine (nor, often,
on CI), so the tests that need a user manager get this one. It records every call, one JSON
list per line, in ``$FAKE_SYSTEMCTL_DIR/calls``, and answers from ``$FAKE_SYSTEMCTL_DIR``:

- ``no-manager``: when it exists, every ``--user`` call fails as a missing user bus does;
- ``<unit>.state``: ``UnitFileState ActiveState SubState`` for ``show`` (default: ``disabled
  inactive dead``); ``enable``/``disable``/``start``/``stop`` change it as systemd would.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SCRIPT = f"""#!{sys.executable}
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from tests.fake_systemctl import main
sys.exit(main(sys.argv[1:]))
"""


def install(bin_dir: Path, state_dir: Path) -> None:
    """Put the fake first on PATH (the caller sets PATH and FAKE_SYSTEMCTL_DIR)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(SCRIPT)
    script.chmod(0o755)


def calls(state_dir: Path) -> list[list[str]]:
    path = state_dir / "calls"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def set_state(state_dir: Path, unit: str, enabled: str, active: str, sub: str) -> None:
    (state_dir / f"{unit}.state").write_text(f"{enabled} {active} {sub}\n")


def _state(state_dir: Path, unit: str) -> list[str]:
    path = state_dir / f"{unit}.state"
    return path.read_text().split() if path.exists() else ["disabled", "inactive", "dead"]


def main(argv: list[str]) -> int:
    state_dir = Path(os.environ["FAKE_SYSTEMCTL_DIR"])
    with (state_dir / "calls").open("a") as record:
        record.write(json.dumps(argv) + "\n")
    if (state_dir / "no-manager").exists():
        print("Failed to connect to bus: No medium found", file=sys.stderr)
        return 1
    args = [arg for arg in argv if arg != "--user"]
    verb, rest = args[0], args[1:]
    units = [arg for arg in rest if not arg.startswith("-")]
    if verb == "show":
        if any(arg == "--property=Version" for arg in rest):
            print("Version=252")
            return 0
        enabled, active, sub = _state(state_dir, units[0])
        print(f"UnitFileState={enabled}\nActiveState={active}\nSubState={sub}")
        return 0
    for unit in units:
        enabled, active, sub = _state(state_dir, unit)
        if verb == "enable":
            enabled = "enabled"
        if verb == "disable":
            enabled = "disabled"
        if verb == "start" or (verb == "enable" and "--now" in rest):
            active, sub = "active", "listening" if unit.endswith(".socket") else "running"
        if verb == "stop" or (verb == "disable" and "--now" in rest):
            active, sub = "inactive", "dead"
        set_state(state_dir, unit, enabled, active, sub)
    return 0
