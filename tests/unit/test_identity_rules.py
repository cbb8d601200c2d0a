"""The project id rule and the normalisation of git remote URLs into ids (pure functions)."""

from __future__ import annotations

import pytest

from coordinatord.errors import InvalidArgumentError
from coordinatord.identity.rules import (
    MAX_PROJECT_ID,
    check_project_id,
    fit,
    is_project_id,
    normalise_remote,
    project_id_problem,
    subproject_id,
)
from coordinatord.keyspace import Namespace, project_id_for

ONE_REPOSITORY = [
    "git@github.com:org/app.git",
    "git@github.com:org/app",
    "github.com:org/app.git",
    "ssh://git@github.com/org/app.git",
    "ssh://git@github.com:22/org/app.git",
    "ssh://git@ssh.github.com:443/org/app.git",
    "git+ssh://git@github.com/org/app",
    "ssh+git://github.com/org/app",
    "https://github.com/org/app",
    "https://github.com/org/app.git",
    "https://github.com/org/app/",
    "https://github.com/org/app.git/",
    "https://user:ghp_S3cretT0ken@github.com/org/app",
    "https://x-access-token:abc@github.com:443/org/app.git",
    "http://github.com/org/app",
    "git://github.com/org/app.git",
    "HTTPS://GitHub.COM/Org/App.git",
    "git@GITHUB.com:Org/App.git",
    "https://github.com//org///app",
    "https://github.com/./org/app?ref=main#readme",
    "github.com/org/app/",
    "github.com/org/app",
    "  https://github.com/org/app  ",
    "persistent-https::https://github.com/org/app",
    "https://github.com/org/%61pp",
]


@pytest.mark.parametrize("url", ONE_REPOSITORY)
def test_every_spelling_of_one_repository_is_one_id(url: str) -> None:
    """scp-like, ssh with and without port, https with credentials, trailing slash and .git, an
    upper-case host, a bare host/path and a transport helper all name github.com/org/app."""
    assert normalise_remote(url) == "github.com/org/app"


def test_credentials_never_reach_the_id() -> None:
    """A user, password or token in the URL is dropped, whatever the host."""
    found = normalise_remote("https://ana:hunter2@git.example.com:8443/team/app.git")
    assert found == "git.example.com/team/app"
    assert "hunter2" not in (found or "") and "ana" not in (found or "")


def test_path_case_is_kept_on_other_hosts() -> None:
    """A self-hosted server may hold App and app apart, so only the host is lower-cased there."""
    assert normalise_remote("git@Git.Example.com:Team/App.git") == "git.example.com/Team/App"
    assert normalise_remote("https://gitlab.com/Group/App") == "gitlab.com/group/app"


def test_gitlab_subgroups_are_kept_in_the_path() -> None:
    """Nested groups stay parts of the id, in both spellings."""
    expected = "gitlab.com/acme/platform/backend/api"
    assert normalise_remote("git@gitlab.com:acme/platform/backend/api.git") == expected
    assert normalise_remote("https://gitlab.com/acme/platform/backend/api") == expected


def test_home_relative_and_absolute_scp_paths() -> None:
    """scp-like remotes may name a path in a user's home (~) or from the root of the server."""
    assert normalise_remote("git.sr.ht:~ana/app") == "git.sr.ht/~ana/app"
    assert normalise_remote("deploy@build.example.org:/srv/git/app.git") == "build.example.org/srv/git/app"


@pytest.mark.parametrize(
    "url",
    [
        "/srv/git/app.git",
        "../app",
        "./app.git",
        "app",
        "file:///srv/git/app.git",
        "file://localhost/srv/git/app",
        "C:\\src\\app",
        "C:/src/app",
        "",
        "https://github.com",
        "git@github.com:",
        "https://github.com/../etc",
        "ssh://git@/org/app",
        "https://github.com/org/\x07app",
    ],
)
def test_local_and_unusable_remotes_give_no_id(url: str) -> None:
    """Local paths (absolute, relative, file://, DOS drives) name one machine's folder, and a URL
    naming no repository names nothing: the caller falls back to the path hash."""
    assert normalise_remote(url) is None


def test_unsafe_characters_are_percent_encoded() -> None:
    """Spaces, braces and glob characters of a URL path become %XX, so the id stays key-safe, and
    a space and %20 are one spelling."""
    found = normalise_remote("git@dev.example.com:My Org/app{*?[x]}\\")
    assert found == "dev.example.com/My%20Org/app%7B%2A%3F%5Bx%5D%7D%5C"
    assert normalise_remote("https://dev.example.com/My%20Org/app%7B%2A%3F%5Bx%5D%7D%5C") == found
    assert found is not None and is_project_id(found)


def test_the_rule_accepts_every_kind_of_id() -> None:
    """Path-hash ids, the default project, remote ids and ids named on purpose are all ids."""
    for value in (
        project_id_for("/home/ana/src/app"),
        "default",
        "github.com/org/app",
        "acme-app",
        "a~b%20c",
    ):
        assert project_id_problem(value) is None, value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a{b}",
        "a*",
        "a?",
        "a[b]",
        "a\\b",
        "a:b",
        "a b",
        "a\nb",
        "/abs",
        "a//b",
        "a/./b",
        "a/../b",
        "a/",
        ".a",
        "-a",
    ],
)
def test_the_rule_refuses_what_would_break_a_key(value: str) -> None:
    """Braces (the hash tag), glob characters (MATCH patterns), colons, blanks, control characters
    and empty or dotted path parts are refused with a reason."""
    assert project_id_problem(value) is not None
    with pytest.raises(InvalidArgumentError, match="not a project id"):
        check_project_id(value)


def test_long_ids_are_cut_with_a_hash_of_the_whole() -> None:
    """Two long ids sharing their beginning stay apart, within the length limit, and follow the rule."""
    deep = "gitlab.example.com/" + "/".join(f"group{i}" for i in range(60))
    one, other = fit(deep + "/a"), fit(deep + "/b")
    assert one != other and len(one) <= MAX_PROJECT_ID and len(other) <= MAX_PROJECT_ID
    assert is_project_id(one) and normalise_remote(f"https://{deep}/a.git") == one


def test_a_subfolder_has_the_repository_id_and_its_path() -> None:
    """A project rooted below its repository's top travels with the repository."""
    assert (
        subproject_id("github.com/org/app", ("packages", "web ui")) == "github.com/org/app/packages/web%20ui"
    )
    assert subproject_id("github.com/org/app", ()) == "github.com/org/app"


def test_a_remote_id_makes_a_namespace_no_pattern_can_escape() -> None:
    """The namespace prefix of a remote id holds one hash tag and no glob character."""
    found = normalise_remote("git@github.com:org/app.git")
    assert found is not None
    prefix = Namespace(found).prefix
    assert prefix == "coord:{github.com/org/app}:"
    assert prefix.count("{") == 1 and not any(ch in prefix for ch in "*?[]\\")
