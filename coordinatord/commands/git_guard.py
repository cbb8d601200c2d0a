"""``coordinatord git-guard install|uninstall|check``: a git pre-commit hook that refuses a
commit of files another agent reserved exclusively (``files_reserve``).

The hook goes where git looks for hooks (``git rev-parse --git-path hooks``: ``core.hooksPath``
when set, else the common git dir's ``hooks``, which every worktree of the repository shares).
An existing ``pre-commit`` that is not ours is moved aside to ``pre-commit.pre-coordinatord``
and run after our check; ``uninstall`` puts it back. Installing twice changes nothing (a hook
of ours from another interpreter is rewritten). The hook runs ``python -m coordinatord.guard``
with the interpreter that installed it (see :mod:`coordinatord.guard`).

Exit status: 0 done (or nothing to do), 1 refused (not a repository, a previous hook already
set aside), 3 (``check`` only) the staged files are reserved.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from coordinatord import guard

MARKER = "# coordinatord git-guard"
BACKUP_SUFFIX = ".pre-coordinatord"


def hook_text(python: str, socket: str | None) -> str:
    flags = f" --socket {shlex.quote(socket)}" if socket else ""
    py = shlex.quote(python)
    return f"""#!/bin/sh
{MARKER} (installed by `coordinatord git-guard install`; `coordinatord git-guard uninstall` removes it)
# Refuses a commit of files another agent reserved exclusively (files_reserve); passes, with a
# warning, when the daemon is down. Bypass: {guard.GUARD_ENV}=off git commit ..., or git commit --no-verify.
if [ "${guard.GUARD_ENV}" != off ]; then
  if [ -x {py} ]; then
    {py} -m coordinatord.guard{flags}
    status=$?
    [ $status -eq {guard.EXIT_REFUSED} ] && exit 1
    [ $status -ne 0 ] &&
      echo "coordinatord git-guard: the check failed (status $status); commit not checked" >&2
  else
    echo "coordinatord git-guard: {python} is gone; commit not checked" \
      "(run coordinatord git-guard install again)" >&2
  fi
fi
previous="$0{BACKUP_SUFFIX}"
if [ -x "$previous" ]; then exec "$previous" "$@"; fi
exit 0
"""


def hooks_dir(repo: Path) -> Path:
    """Where git runs hooks from for ``repo`` (core.hooksPath, worktrees' common dir)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks"],  # noqa: S607 - the user's git, from PATH
            cwd=repo,
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise SystemExit(_fail(f"{repo} is not a git repository: {exc.stderr.decode().strip()}")) from None
    path = Path(out.decode().strip())
    return path if path.is_absolute() else (repo / path).resolve()


def _fail(text: str) -> int:
    print(f"coordinatord git-guard: {text}", file=sys.stderr, flush=True)
    return 1


def install(repo: Path, socket: str | None, python: str = sys.executable) -> int:
    hooks = hooks_dir(repo)
    hook, backup = hooks / "pre-commit", hooks / f"pre-commit{BACKUP_SUFFIX}"
    text = hook_text(python, socket)
    current = hook.read_text(encoding="utf-8", errors="replace") if hook.exists() else None
    if current == text:
        print(f"coordinatord git-guard: already installed in {hook}")
        return 0
    if current is not None and MARKER not in current:
        if backup.exists():
            return _fail(f"{hook} is not ours and {backup} already exists; move one of them away first")
        os.replace(hook, backup)
        print(f"coordinatord git-guard: moved the existing hook to {backup}; it runs after the check")
    hooks.mkdir(parents=True, exist_ok=True)
    temporary = hook.with_name(".pre-commit.coordinatord.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(0o755)
    os.replace(temporary, hook)
    print(f"coordinatord git-guard: installed {hook}")
    return 0


def uninstall(repo: Path) -> int:
    hooks = hooks_dir(repo)
    hook, backup = hooks / "pre-commit", hooks / f"pre-commit{BACKUP_SUFFIX}"
    current = hook.read_text(encoding="utf-8", errors="replace") if hook.exists() else None
    if current is None or MARKER not in current:
        print(f"coordinatord git-guard: no coordinatord hook in {hooks}; nothing to do")
        return 0
    hook.unlink()
    if backup.exists():
        os.replace(backup, hook)
        print(f"coordinatord git-guard: removed the hook; restored the previous one to {hook}")
    else:
        print(f"coordinatord git-guard: removed {hook}")
    return 0


def main(args: argparse.Namespace) -> int:
    repo = Path(args.repo or ".")
    if args.action == "install":
        return install(repo, args.socket)
    if args.action == "uninstall":
        return uninstall(repo)
    if args.repo:
        os.chdir(repo)
    return guard.check(args.socket, args.config, args.agent)
