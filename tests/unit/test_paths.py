"""Default locations and project roots: from the uid and HOME alone, one spelling per root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coordinatord import paths


def test_socket_in_the_uids_runtime_dir_when_it_is_its_own(tmp_path: Path) -> None:
    """/run/user/<uid> owned by the uid holds the socket; a missing or foreign one does not."""
    uid = os.getuid()
    run_user, tmp = tmp_path / "run-user", tmp_path / "tmp"
    run_user.mkdir()
    (run_user / str(uid)).mkdir()
    assert (
        paths.default_socket_path(uid, run_user, tmp)
        == run_user / str(uid) / "coordinatord" / "coordinatord.sock"
    )
    assert (
        paths.default_socket_path(uid + 1, run_user, tmp) == tmp / f"coordinatord-{uid + 1}/coordinatord.sock"
    )
    (run_user / str(uid + 2)).mkdir()  # exists, but belongs to us, not to uid + 2
    assert (
        paths.default_socket_path(uid + 2, run_user, tmp) == tmp / f"coordinatord-{uid + 2}/coordinatord.sock"
    )


def test_socket_default_ignores_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable an MCP client strips does not move the socket."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    stripped = paths.default_socket_path()
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/somewhere/else")
    assert paths.default_socket_path() == stripped


def test_config_file_comes_from_home_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config.toml in the cwd is never picked up; ~/.config/coordinatord/config.toml is."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text('baseURL = "x"\n')
    assert paths.find_config_file(None, {}) is None
    user = tmp_path / "home" / ".config" / "coordinatord" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("")
    assert paths.find_config_file(None, {"XDG_CONFIG_HOME": str(tmp_path)}) == user
    assert paths.find_config_file(None, {"COORDINATORD_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert paths.find_config_file("/flag.toml", {"COORDINATORD_CONFIG": "/x.toml"}) == Path("/flag.toml")


def test_every_spelling_of_a_root_is_one_canonical_path(tmp_path: Path) -> None:
    """``a/../b``, ``b/``, ``//b``, ``./b`` and a symlink to b all name b."""
    real = tmp_path.resolve()
    (real / "a").mkdir()
    (real / "b").mkdir()
    (real / "link").symlink_to(real / "b")
    spellings = [
        f"{real}/a/../b",
        f"{real}/b/",
        f"/{real}/b",
        f"{real}/./b",
        f"{real}/link",
        f"{real}//b//",
    ]
    assert {paths.canonical_root(spelling) for spelling in spellings} == {str(real / "b")}


def test_project_root_is_the_nearest_marked_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nearest folder with .git (a directory or a worktree's file) or another marker."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src" / "deep").mkdir(parents=True)
    assert paths.find_project_root(repo / "src" / "deep") == repo.resolve()
    worktree = tmp_path / "wt"
    worktree.mkdir()
    (worktree / ".git").write_text("gitdir: /elsewhere\n")
    assert paths.find_project_root(worktree) == worktree.resolve()
    kilo = tmp_path / "kilo"
    (kilo / ".kilocode").mkdir(parents=True)
    assert paths.find_project_root(kilo) == kilo.resolve()


def test_no_project_outside_a_repository_or_in_home_or_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No marker, or a marker only in HOME (a dotfiles repository) or /: no project."""
    home = tmp_path / "home"
    (home / ".git").mkdir(parents=True)
    (home / "Downloads").mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert paths.find_project_root(home) is None
    assert paths.find_project_root(home / "Downloads") is None
    assert paths.find_project_root(Path("/")) is None
    plain = tmp_path / "plain"
    plain.mkdir()
    assert paths.find_project_root(plain) is None
    assert str(plain.resolve()) in paths.not_a_project(plain)
