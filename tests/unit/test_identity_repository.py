"""A root's project id read from its repository: ``.coordinatord.toml``, git's config files of
real repositories (made with ``git init``, ``git worktree add``, ``git submodule add`` in a
temporary folder), and the fall-back to the path hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coordinatord.errors import ProjectFileError
from coordinatord.identity import PROJECT_FILE, find_repository, read_project_file, resolve
from coordinatord.identity.gitconfig import parse, rewrite
from coordinatord.keyspace import project_id_for
from coordinatord.scope import ProjectScope, id_note, project_ref
from tests.support import GIT, git, git_repository

pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")

ORIGIN = "git@github.com:org/app.git"


def repository(path: Path, origin: str | None = ORIGIN, commit: bool = False) -> Path:
    git_repository(path, origin, commit)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home directory: no user git config, unless a test writes one."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def test_origin_names_the_project(tmp_path: Path, home: Path) -> None:
    """A repository with an origin gets the normalised URL as its id."""
    root = repository(tmp_path / "app")
    found = resolve(str(root), home)
    assert (found.project_id, found.source, found.root) == ("github.com/org/app", "origin", str(root))
    assert found.path_id == project_id_for(str(root))


def test_two_clones_at_different_paths_are_one_project(tmp_path: Path, home: Path) -> None:
    """Clones whose origins are two spellings of one URL resolve to one id."""
    one = repository(tmp_path / "ana" / "src" / "app")
    other = repository(tmp_path / "bo" / "app-copy", origin="https://bo:token@GitHub.com/org/app")
    assert resolve(str(one), home).project_id == resolve(str(other), home).project_id == "github.com/org/app"


def test_a_worktree_reads_the_main_repository_config(tmp_path: Path, home: Path) -> None:
    """A worktree's .git is a file (gitdir:) whose git dir names the shared one in commondir."""
    main = repository(tmp_path / "main", commit=True)
    git("worktree", "add", "-q", str(tmp_path / "feature"), "-b", "feature", cwd=main)
    assert (tmp_path / "feature" / ".git").is_file()
    found = resolve(str(tmp_path / "feature"), home)
    assert (found.project_id, found.source) == ("github.com/org/app", "origin")


def test_a_submodule_has_its_own_origin(tmp_path: Path, home: Path) -> None:
    """A submodule's .git file points into the superproject's .git/modules, whose config is the
    submodule's own."""
    library = repository(tmp_path / "lib-src", origin=None, commit=True)
    main = repository(tmp_path / "main", commit=True)
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library), "lib", cwd=main)
    submodule = main / "lib"
    assert (submodule / ".git").is_file()
    # Its origin is the local folder it was cloned from: a path, not a repository that travels.
    assert resolve(str(submodule), home).source == "path"
    git("remote", "set-url", "origin", "https://github.com/org/lib.git", cwd=submodule)
    assert resolve(str(submodule), home).project_id == "github.com/org/lib"
    assert resolve(str(main), home).project_id == "github.com/org/app"


def test_no_origin_or_a_local_one_falls_back_to_the_path(tmp_path: Path, home: Path) -> None:
    """Without an origin, or with a local path as origin, the id is the path hash as before."""
    bare = repository(tmp_path / "none", origin=None)
    local = repository(tmp_path / "local", origin="/srv/git/app.git")
    plain = tmp_path / "plain"
    plain.mkdir()
    for root in (bare, local, plain):
        found = resolve(str(root), home)
        assert (found.project_id, found.source) == (project_id_for(str(root)), "path")


def test_a_subfolder_root_gets_the_repository_id_and_its_path(tmp_path: Path, home: Path) -> None:
    """A root below the repository's top (--project naming a subfolder) travels with the repository."""
    root = repository(tmp_path / "mono")
    (root / "packages" / "web").mkdir(parents=True)
    found = resolve(str(root / "packages" / "web"), home)
    assert (found.project_id, found.source) == ("github.com/org/app/packages/web", "origin")


def test_a_mercurial_checkout_inside_a_git_one_is_not_the_git_project(tmp_path: Path, home: Path) -> None:
    """The search for a repository stops at another kind of repository."""
    root = repository(tmp_path / "outer")
    inner = root / "vendor" / "hgthing"
    (inner / ".hg").mkdir(parents=True)
    assert find_repository(inner) is None
    assert resolve(str(inner), home).source == "path"


def test_insteadof_rules_rewrite_the_origin(tmp_path: Path, home: Path) -> None:
    """url.<base>.insteadOf of the user's git config applies, the longest prefix winning."""
    root = repository(tmp_path / "app", origin="gh:org/app")
    (home / ".gitconfig").write_text(
        '[url "git@github.com:"]\n\tinsteadOf = gh:\n[url "https://example.invalid/"]\n\tinsteadOf = g\n'
    )
    assert resolve(str(root), home).project_id == "github.com/org/app"


def test_the_project_file_wins(tmp_path: Path, home: Path) -> None:
    """project.id of .coordinatord.toml beats the origin, also for a folder below the top."""
    root = repository(tmp_path / "fork", origin="git@github.com:ana/app.git")
    (root / PROJECT_FILE).write_text('[project]\nid = "github.com/org/app"\n')
    (root / "docs").mkdir()
    assert (resolve(str(root), home).project_id, resolve(str(root), home).source) == (
        "github.com/org/app",
        ".coordinatord.toml",
    )
    below = resolve(str(root / "docs"), home)
    assert (below.project_id, below.source) == ("github.com/org/app/docs", ".coordinatord.toml")


def test_a_project_file_without_an_id_is_no_project_file(tmp_path: Path, home: Path) -> None:
    """A file with no [project] table, or a table with no id, leaves the origin to decide."""
    root = repository(tmp_path / "app")
    (root / PROJECT_FILE).write_text("[something.else]\nx = 1\n")
    assert resolve(str(root), home).source == "origin"
    (root / PROJECT_FILE).write_text("[project]\n")
    assert read_project_file(root) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[project]\nid = "a{b}"\n', "is not a project id"),
        ('[project]\nid = "has space"\n', "letters, digits"),
        ("[project]\nid = 12\n", "must be a string"),
        ('[project]\nId = "acme"\n', "unknown key 'Id'"),
        ('project = "acme"\n', "must be a table"),
        ("[project\nid=", "not valid TOML"),
    ],
)
def test_a_wrong_project_file_is_an_error_naming_it(
    tmp_path: Path, home: Path, text: str, message: str
) -> None:
    """A present but wrong file is never skipped: the error names the file and the rule."""
    root = repository(tmp_path / "app")
    (root / PROJECT_FILE).write_text(text)
    with pytest.raises(ProjectFileError, match=message) as caught:
        resolve(str(root), home)
    assert str(root / PROJECT_FILE) in str(caught.value)


def test_a_wrong_project_file_leaves_the_connection_without_a_project(tmp_path: Path) -> None:
    """A shim's connection from such a root is served unscoped, its refusals naming the file and
    the fix; the id notes of status say the same."""
    root = tmp_path / "app"
    root.mkdir()
    (root / PROJECT_FILE).write_text('[project]\nid = "*"\n')
    scope = ProjectScope.of_root(str(root))
    assert scope.namespace is None and scope.missing is not None
    assert str(root / PROJECT_FILE) in scope.missing and "fix or remove the file" in scope.missing
    note = id_note(project_id_for(str(root)), str(root), local=True)
    assert note.source == "path" and note.problem is not None


def test_id_notes_name_the_source_and_an_old_namespace(tmp_path: Path) -> None:
    """A known project's note says where its id came from, and, for an old path-hash id whose root
    has an origin now, the id it resolves to."""
    root = repository(tmp_path / "app")
    ref = project_ref(str(root))
    assert id_note(ref.project_id, ref.root, local=True).source == "origin"
    old = id_note(ref.path_id, ref.root, local=True)
    assert (old.source, old.resolves_to) == ("path", ref.project_id)
    assert id_note(ref.project_id, ref.root, local=False).source is None
    assert ProjectScope.of_root(str(root)).id_source == "origin"


def test_git_config_syntax() -> None:
    """Sections old and new, quoted subsections, quoting, escapes, comments and continuations
    are read as git reads them."""
    text = (
        "# a comment\n"
        '[remote "Origin"]\n'
        "\turl = git@github.com:org/app.git ; comment\n"
        '\tURL = "second \\"quoted\\"  value"\n'
        "[Remote.Upper]\n"
        "\turl = one\\\n"
        "two\n"
        "[core] bare\n"
        '[url "git@host:"] insteadOf = h:\n'
        "[broken\n"
        "\tignored = yes\n"
    )
    entries = parse(text)
    assert ("remote.Origin.url", "git@github.com:org/app.git") in entries
    assert ("remote.Origin.url", 'second "quoted"  value') in entries
    assert ("remote.upper.url", "onetwo") in entries
    assert ("core.bare", None) in entries
    assert ("url.git@host:.insteadof", "h:") in entries
    assert not any(name.endswith("ignored") for name, _ in entries)
    assert rewrite("h:org/app", entries) == "git@host:org/app"
    assert rewrite("x:org/app", entries) == "x:org/app"


@pytest.mark.parametrize("where", [PROJECT_FILE, ".git/config", ".git/commondir", "home/.gitconfig"])
def test_a_file_the_id_comes_from_that_is_a_fifo_is_refused_naming_it(
    tmp_path: Path, home: Path, where: str
) -> None:
    """A FIFO where the id is read from (the project file, the repository's config or commondir,
    the user's git config) is a ProjectFileError naming it at once, never a wait for a writer
    and never a silent fall-back to the path id."""
    root = repository(tmp_path / "app")
    target = tmp_path / where if where.startswith("home/") else root / where
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    with pytest.raises(ProjectFileError, match=r"is a FIFO \(named pipe\)") as caught:
        resolve(str(root), home)
    assert str(target) in str(caught.value)


def test_a_dot_git_that_is_a_device_or_a_loop_is_refused(tmp_path: Path, home: Path) -> None:
    """A .git that is /dev/zero through a symlink, or a symlink loop, is refused as what it is."""
    root = tmp_path / "app"
    root.mkdir()
    (root / ".git").symlink_to("/dev/zero")
    with pytest.raises(ProjectFileError, match="is a character device"):
        resolve(str(root), home)
    (root / ".git").unlink()
    (root / ".git").symlink_to(".git")
    with pytest.raises(ProjectFileError, match="is a symlink loop"):
        resolve(str(root), home)


def test_an_oversized_git_config_is_refused_not_cut(tmp_path: Path, home: Path) -> None:
    """A repository config over 1 MiB (a sparse file here) is refused with its size, where it
    used to be read in part."""
    root = repository(tmp_path / "app")
    with (root / ".git" / "config").open("r+b") as handle:
        handle.truncate(1 << 30)
    with pytest.raises(ProjectFileError, match=r"config is 1\.0 GiB"):
        resolve(str(root), home)
