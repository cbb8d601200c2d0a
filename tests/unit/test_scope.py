"""The rules that name projects: one id per root whatever its spelling, and what a connection's
preamble makes of it (a project, the default project, or no project at all)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coordinatord import paths
from coordinatord.context import Peer
from coordinatord.errors import NoProjectError
from coordinatord.keyspace import DEFAULT_PROJECT_ID, project_id_for
from coordinatord.preamble import Preamble
from coordinatord.scope import ProjectScope, project_ref


@pytest.fixture
def real(tmp_path: Path) -> Path:
    """A folder with a project ``b``, a sibling ``a`` and a symlink ``link`` → ``b``."""
    base = Path(os.path.realpath(tmp_path))
    (base / "a").mkdir()
    (base / "b").mkdir()
    (base / "link").symlink_to(base / "b")
    return base


def test_every_spelling_of_a_root_is_one_project(real: Path) -> None:
    """/x/a/../b, /x/b/, //x/b, /x/./b and a symlink to /x/b give one root and one id."""
    spellings = [f"{real}/a/../b", f"{real}/b/", f"/{real}/b", f"{real}/./b", f"{real}/link", f"{real}//b"]
    refs = {project_ref(spelling) for spelling in spellings}
    assert len(refs) == 1
    (ref,) = refs
    assert ref.root == str(real / "b")
    assert ref.project_id == project_id_for(str(real / "b")) and ref.project_id.startswith("b-")
    assert ref.namespace.project_id == ref.project_id


def test_no_preamble_is_the_default_project() -> None:
    """A raw MCP client (no preamble) works in the default project: every tool, no root, not
    announced."""
    scope = ProjectScope.of(None)
    assert scope.project_id == DEFAULT_PROJECT_ID
    assert (scope.root, scope.missing, scope.announced) == (None, None, False)
    assert scope.refusal(needs_project=True) is None


def test_a_named_root_is_canonical_and_announced(real: Path) -> None:
    """The daemon canonicalises the preamble's root itself, whatever the shim sent."""
    scope = ProjectScope.of(Preamble("kilocode", f"/{real}/a/../b/", 42, cwd=str(real)))
    assert scope.root == str(real / "b")
    assert scope.project_id == project_id_for(str(real / "b"))
    assert scope.announced and scope.refusal(needs_project=True) is None


def test_project_null_is_unscoped_and_names_the_fix(tmp_path: Path) -> None:
    """project: null is no project: calls that need one are refused with the directory, the
    reason and the fix; a call that needs none (redis_ping) goes ahead."""
    scope = ProjectScope.of(Preamble("kilocode", None, 42, cwd=str(tmp_path)))
    assert (scope.namespace, scope.project_id, scope.root, scope.announced) == (None, None, None, False)
    refusal = scope.refusal(needs_project=True)
    assert refusal is not None
    assert refusal.startswith("this editor's shim has no project: ")
    assert paths.not_a_project(tmp_path) in refusal and refusal.endswith(paths.SHIM_PROJECT_FIX)
    assert scope.refusal(needs_project=False) is None


def test_project_null_without_a_cwd_says_so() -> None:
    """A preamble with neither project nor cwd: the refusal says the shim sent no directory."""
    refusal = ProjectScope.of(Preamble(None, None, None)).refusal(needs_project=True)
    assert refusal is not None and "sent no working directory" in refusal and "--project" in refusal


def peer(scope: ProjectScope, claimed: int | None = 456, real_pid: int | None = 123) -> Peer:
    return Peer(
        conn_id=7,
        agent="kilocode",
        scope=scope,
        claimed_pid=claimed,
        peer_pid=real_pid,
        peer_uid=1000,
        groups=frozenset({"kv"}),
    )


def test_the_kernels_pid_is_the_pid_and_a_different_claim_is_a_mismatch() -> None:
    """pid is SO_PEERCRED's whenever there is one; the preamble's only when there is not."""
    mismatched = peer(ProjectScope.default())
    assert (mismatched.pid, mismatched.pid_mismatch) == (123, True)
    assert mismatched.describe() == {
        "conn": 7,
        "agent": "kilocode",
        "project": DEFAULT_PROJECT_ID,
        "id_source": None,
        "root": None,
        "no_project": None,
        "cwd": None,
        "pid": 123,
        "peer_pid": 123,
        "peer_uid": 1000,
        "claimed_pid": 456,
    }
    assert not peer(ProjectScope.default(), claimed=123).pid_mismatch
    assert not peer(ProjectScope.default(), claimed=None).pid_mismatch
    no_creds = peer(ProjectScope.default(), real_pid=None)
    assert (no_creds.pid, no_creds.pid_mismatch) == (456, False)


def test_an_unscoped_peer_has_no_namespace(tmp_path: Path) -> None:
    """Reaching for an unscoped connection's namespace is the same refusal its calls get, so no
    code path can write keys for it by mistake."""
    unscoped = peer(ProjectScope.unscoped(str(tmp_path)))
    with pytest.raises(NoProjectError, match="has no project"):
        _ = unscoped.namespace
    assert unscoped.project_id is None
    assert unscoped.describe()["cwd"] == str(tmp_path)
    assert "is not inside a project" in unscoped.describe()["no_project"]
