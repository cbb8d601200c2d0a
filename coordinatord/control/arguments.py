"""Arguments several control commands take, checked one way."""

from __future__ import annotations

import os
from typing import Any

from coordinatord.errors import InvalidArgumentError, NotFoundError
from coordinatord.scope import project_ref
from coordinatord.services.projects import KnownProject, ProjectRegistry


async def project_argument(registry: ProjectRegistry, value: Any) -> KnownProject:
    """The project a command names: a known project by root (any spelling) or id, or an
    absolute root no shim has announced yet (shown as it is: empty, or its shims are
    elsewhere). Anything else is refused, listing the known projects."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError("argument 'project' must be a project root (an absolute path) or id")
    found = await registry.find(value)
    if found is not None:
        return found
    if os.path.isabs(value):
        ref = await registry.reads.run(value, project_ref, value)  # any spelling: one project
        return KnownProject(
            project_id=ref.project_id, root=ref.root, host=registry.host, last_seen=None, source="command"
        )
    known = await registry.known()
    names = ", ".join(f"{p.project_id} ({p.root})" for p in known) or "none yet"
    raise NotFoundError(
        f"no known project {value!r}; known projects: {names} (coordinatord projects list shows them)"
    )
