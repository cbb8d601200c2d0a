"""Where each editor keeps its MCP servers, and in what shape: a table of data.

Paths are relative to the home directory (global) or the project root (project). When a scope
has several candidates, :func:`choose` takes the first that exists as a file, else the first
whose directory exists (the editor is installed there), else the first.

Sources, checked in 2026 (editors move these; see docs/editors.md for the hand-written form):

- Kilo Code (the new, opencode-based extension and ``kilo`` CLI): ``mcp`` in
  ``~/.config/kilo/kilo.jsonc``, project ``kilo.jsonc`` or ``.kilo/kilo.jsonc``
  (kilo.ai/docs/automate/mcp/using-in-kilo-code; Kilo-Org/kilocode packages/kilo-docs).
  The legacy extension: ``.kilocode/mcp.json``, globalStorage ``kilocode.kilo-code``.
- Cline, VS Code extension: globalStorage ``saoudrizwan.claude-dev/settings/
  cline_mcp_settings.json``. Cline CLI: ``~/.cline/data/settings/cline_mcp_settings.json``
  (cline/cline#7081 and #7249, maintainers' answer; cline/cline#9390 CLI configuration docs;
  cline/cline#11683: the ``~/.cline/mcp.json`` of the MCP overview page is not read). Cline's
  auto-approve key is ``autoApprove``; it has no project scope (cline/cline#13596).
- Google Antigravity: see ``ANTIGRAVITY_PATHS`` below.
- Roo Code: ``.roo/mcp.json``, globalStorage ``rooveterinaryinc.roo-cline/settings/
  mcp_settings.json`` (docs.roocode.com/features/mcp/using-mcp-in-roo).
- Claude Code: project ``.mcp.json``, user ``mcpServers`` of ``~/.claude.json``.
- Cursor: ``.cursor/mcp.json``, ``~/.cursor/mcp.json``. VS Code: ``servers`` of
  ``.vscode/mcp.json`` / ``<user dir>/mcp.json``, ``"type": "stdio"``. Windsurf:
  ``~/.codeium/windsurf/mcp_config.json``. Zed: ``context_servers`` of its settings.json
  (zed.dev/docs/ai/mcp: ``command``, ``args``, ``env``). Codex: ``[mcp_servers.NAME]`` of
  ``~/.codex/config.toml``. Gemini CLI: ``mcpServers`` of ``.gemini/settings.json``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

# No typing at run time: see TYPE_CHECKING in coordinatord/cli.py.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Syntax = Literal["json", "jsonc", "toml"]
    Shape = Literal["standard", "typed", "kilo", "zed"]


def vscode_user_dirs() -> tuple[str, ...]:
    """VS Code's user-data directories relative to home, the local one first, then the
    server's (Remote SSH/WSL: extensions run there), Insiders and VSCodium."""
    config = "Library/Application Support" if sys.platform == "darwin" else ".config"
    return (
        f"{config}/Code/User",
        ".vscode-server/data/User",
        f"{config}/Code - Insiders/User",
        f"{config}/VSCodium/User",
    )


def _global_storage(extension: str, filename: str) -> tuple[str, ...]:
    return tuple(f"{user}/globalStorage/{extension}/settings/{filename}" for user in vscode_user_dirs())


# Google Antigravity. Antigravity 2.0 (the desktop app and the `agy` CLI, May 2026) reads
# ~/.gemini/config/mcp_config.json, `mcpServers` with command/args/env: the global
# "customization root" is ~/.gemini/config/ and the workspace one is <project>/.agents/
# (google-antigravity/antigravity-cli#60, from the agy binary's embedded docs, and its
# workaround of .agents/mcp_config.json; the same paths in thedotmack/claude-mem#2826, "verified
# against agy v1.0.6: a server at ~/.gemini/antigravity/mcp_config.json never registers", and
# IvanMurzak/Unity-MCP#813). Installs from before 2.0 read ~/.gemini/antigravity/mcp_config.json
# (the path of the early guides, e.g. github-mcp-server's install-antigravity.md); 2.0 migrates
# them and leaves ~/.gemini/config/.migrated (WolframResearch/AgentTools#191). So: the 2.0 path
# first; the old one only where it is the one that exists. Not ~/.gemini/antigravity-cli/
# (the CLI's own settings and caches) and not ~/.gemini/settings.json (the Gemini CLI's).
ANTIGRAVITY_PATHS = (".gemini/config/mcp_config.json", ".gemini/antigravity/mcp_config.json")


@dataclass(frozen=True)
class Target:
    editor: str
    """The name ``coordinatord editor add`` takes."""
    title: str
    syntax: Syntax
    container: tuple[str, ...]
    """The keys of the object holding the servers, from the top of the file."""
    shape: Shape
    global_paths: tuple[str, ...] = ()
    project_paths: tuple[str, ...] = ()
    allow_key: str | None = None
    """The per-server list of tools called without asking (``alwaysAllow``), if the editor has one."""
    default_agent: str | None = None
    next_global: str = ""
    next_project: str = ""
    aliases: tuple[str, ...] = field(default=())

    @property
    def agent(self) -> str:
        return self.default_agent or self.editor

    def scopes(self) -> tuple[str, ...]:
        return tuple(
            scope
            for scope, paths in (("project", self.project_paths), ("global", self.global_paths))
            if paths
        )


_RELOAD = "reload the VS Code window (Command Palette: 'Developer: Reload Window')"

TARGETS: tuple[Target, ...] = (
    Target(
        "kilocode",
        "Kilo Code",
        "jsonc",
        ("mcp",),
        "kilo",
        global_paths=(".config/kilo/kilo.jsonc", ".config/kilo/kilo.json"),
        project_paths=("kilo.jsonc", ".kilo/kilo.jsonc", "kilo.json", ".kilo/kilo.json"),
        next_global=f"{_RELOAD}, or start `kilo` again; the server is listed under Settings > "
        "Agent Behaviour > MCP Servers",
        next_project=f"{_RELOAD}, or start `kilo` again in the project; the server is listed under "
        "Settings > Agent Behaviour > MCP Servers",
    ),
    Target(
        "kilocode-legacy",
        "Kilo Code (legacy extension, before kilo.jsonc)",
        "json",
        ("mcpServers",),
        "standard",
        global_paths=_global_storage("kilocode.kilo-code", "mcp_settings.json"),
        project_paths=(".kilocode/mcp.json",),
        allow_key="alwaysAllow",
        default_agent="kilocode",
        next_global="Kilo Code reloads the file when it changes; if the server is missing, " + _RELOAD,
        next_project="Kilo Code reloads .kilocode/mcp.json when it changes; if the server is missing, "
        + _RELOAD,
    ),
    Target(
        "cline",
        "Cline (VS Code extension)",
        "json",
        ("mcpServers",),
        "standard",
        global_paths=_global_storage("saoudrizwan.claude-dev", "cline_mcp_settings.json"),
        allow_key="autoApprove",
        next_global="Cline reloads cline_mcp_settings.json when it changes: check MCP Servers > "
        "Installed (use 'Restart Server' there if it shows an error)",
    ),
    Target(
        "cline-cli",
        "Cline CLI",
        "json",
        ("mcpServers",),
        "standard",
        global_paths=(".cline/data/settings/cline_mcp_settings.json",),
        allow_key="autoApprove",
        next_global="start a new `cline` session (it reads the file when it starts; a CLINE_DIR or "
        "CLINE_MCP_SETTINGS_PATH of yours moves it: then copy the entry there)",
    ),
    Target(
        "antigravity",
        "Google Antigravity",
        "json",
        ("mcpServers",),
        "standard",
        global_paths=ANTIGRAVITY_PATHS,
        project_paths=(".agents/mcp_config.json",),
        next_global="in Antigravity: Agent panel > ... > MCP Servers > Manage MCP Servers > Refresh "
        "(or restart Antigravity / `agy`)",
        next_project="restart Antigravity / `agy` in the project; if the server does not show, "
        "use --global (workspace MCP files are read by recent versions only)",
    ),
    Target(
        "roo",
        "Roo Code",
        "json",
        ("mcpServers",),
        "standard",
        global_paths=_global_storage("rooveterinaryinc.roo-cline", "mcp_settings.json"),
        project_paths=(".roo/mcp.json",),
        allow_key="alwaysAllow",
        next_global="Roo Code reloads the file when it changes; if the server is missing, " + _RELOAD,
        next_project="Roo Code reloads .roo/mcp.json when it changes; if the server is missing, " + _RELOAD,
    ),
    Target(
        "claude-code",
        "Claude Code",
        "json",
        ("mcpServers",),
        "typed",
        global_paths=(".claude.json",),
        project_paths=(".mcp.json",),
        next_global="restart Claude Code; `claude mcp list` shows the server. Tools are asked for "
        'each time unless .claude/settings.json allows them: "permissions": {"allow": ["mcp__redis"]}',
        next_project="Claude Code shows a server of a project's .mcp.json as 'Pending approval' "
        "until you approve it: start `claude` in the project and accept the prompt, or run /mcp, "
        "pick the server and approve it (`claude mcp reset-project-choices` asks again). To stop "
        'being asked for each tool: .claude/settings.json "permissions": {"allow": ["mcp__redis"]}',
    ),
    Target(
        "cursor",
        "Cursor",
        "json",
        ("mcpServers",),
        "standard",
        global_paths=(".cursor/mcp.json",),
        project_paths=(".cursor/mcp.json",),
        next_global="open Cursor Settings > MCP (Tools & Integrations): enable the server if it "
        "is off; reload the window if it is not listed",
        next_project="open Cursor Settings > MCP (Tools & Integrations): enable the server if it "
        "is off; reload the window if it is not listed",
    ),
    Target(
        "vscode",
        "VS Code (GitHub Copilot agent mode)",
        "jsonc",
        ("servers",),
        "typed",
        global_paths=tuple(f"{user}/mcp.json" for user in vscode_user_dirs()),
        project_paths=(".vscode/mcp.json",),
        next_global="run 'MCP: List Servers' in VS Code and start the server (VS Code asks you to "
        "trust it the first time)",
        next_project="run 'MCP: List Servers' in VS Code and start the server (VS Code asks you to "
        "trust it the first time)",
    ),
    Target(
        "windsurf",
        "Windsurf",
        "json",
        ("mcpServers",),
        "standard",
        global_paths=(".codeium/windsurf/mcp_config.json",),
        next_global="in Windsurf: Cascade > MCP servers (the hammer icon) > Refresh",
    ),
    Target(
        "zed",
        "Zed",
        "jsonc",
        ("context_servers",),
        "zed",
        global_paths=(".config/zed/settings.json",),
        project_paths=(".zed/settings.json",),
        next_global="Zed reloads its settings by itself; the Agent Panel's settings list the "
        "server (a green dot when it runs)",
        next_project="Zed reloads .zed/settings.json by itself; the Agent Panel's settings list "
        "the server (a green dot when it runs)",
    ),
    Target(
        "codex",
        "OpenAI Codex CLI",
        "toml",
        ("mcp_servers",),
        "standard",
        global_paths=(".codex/config.toml",),
        next_global="restart Codex (it reads config.toml when it starts); `codex mcp list` shows "
        "the server (a CODEX_HOME of yours moves the file: then copy the table there)",
    ),
    Target(
        "gemini",
        "Gemini CLI",
        "jsonc",
        ("mcpServers",),
        "standard",
        global_paths=(".gemini/settings.json",),
        project_paths=(".gemini/settings.json",),
        next_global="restart `gemini`; /mcp lists the server",
        next_project="restart `gemini` in the project; /mcp lists the server",
    ),
)

BY_NAME: dict[str, Target] = {target.editor: target for target in TARGETS}


def choose(base: Path, candidates: tuple[str, ...]) -> Path:
    """The candidate to write: the first that exists, else the first whose directory exists,
    else the first."""
    paths = [base / candidate for candidate in candidates]
    for path in paths:
        if path.is_file():
            return path
    for path in paths:
        if path.parent.is_dir():
            return path
    return paths[0]
