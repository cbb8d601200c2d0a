"""The seed's NOAUTH story end to end: a daemon on a password-protected Redis given no password
starts, says on stderr what is wrong, and every tool reply and ``status`` name the fix; a
malformed URL is a settings error (exit 2, no traceback) in every command that reads it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest

from tests.e2e.conftest import PROTECTED_PASSWORD, connect, text_of
from tests.support import COORDINATORD, ValkeyProcess, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PASSWORD = PROTECTED_PASSWORD


async def test_noauth_is_named_in_tool_replies_status_and_start_up(
    protected: ValkeyProcess, workdir: Path
) -> None:
    """A daemon given a protected Redis without a password still starts; tool replies and ``status --json``
    call it NOAUTH and show the URL form with PASSWORD, and the warning reaches the starter's stderr even
    with console logging off."""
    form = f"redis://:PASSWORD@127.0.0.1:{protected.tcp_port}/0"
    env = {"REDIS_URL": protected.tcp_url, "COORDINATORD_LOGGING__CONSOLE": "never"}
    with running_daemon(env) as daemon:
        async with connect(daemon.socket_path, project=workdir) as client:
            reply = await client.call_tool("redis_get", {"key": "agent:context:s1"})
        assert reply.is_error
        assert "needs a password (NOAUTH)" in text_of(reply) and form in text_of(reply)
        with anyio.fail_after(30):
            status = await anyio.run_process(
                [COORDINATORD, "status", "--json", "--socket", str(daemon.socket_path)], check=False
            )
        backend = json.loads(status.stdout)["backend"]
        assert backend["healthy"] is False and backend["kind"] == "noauth"
        assert form in backend["error"]
    # Console logging was off: the warning still reached the stderr of whoever started it.
    assert f"coordinatord: warning: backend {protected.tcp_url} was reached but needs a password" in (
        daemon.output.decode()
    )


@pytest.mark.parametrize("command", [["serve"], ["tail", "--project", "some-project"], ["config"]])
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://127.0.0.1:notaport/0", "has port 'notaport'"),
        ("redis://127.0.0.1:6379/abc", "has '/abc' as its path"),
        ("mongodb://127.0.0.1:27017", "must start with redis://, rediss:// or unix://"),
    ],
)
def test_a_malformed_url_is_a_settings_error(command: list[str], url: str, said: str, workdir: Path) -> None:
    """A malformed REDIS_URL makes ``serve``, ``tail`` and ``config`` exit 2 with a message naming what is
    wrong and no traceback, so a typo reads as a settings mistake rather than a crash."""
    env = {"HOME": str(workdir), "PATH": "/usr/bin:/bin", "REDIS_URL": url}
    done = subprocess.run(
        [COORDINATORD, *command, "--socket", str(workdir / "c.sock"), "--state-dir", str(workdir / "s")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert said in done.stderr
    assert "Traceback" not in done.stderr
