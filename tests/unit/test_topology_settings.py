"""backend.mode: what cluster and sentinel modes need, refused clearly when missing; SCAN routing."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinatord.errors import ConfigError
from coordinatord.settings import Settings, effective_settings, load_settings
from coordinatord.store.cluster import pattern_slot


@pytest.fixture(autouse=True)
def no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty config file, so that only the variables given count."""
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("COORDINATORD_TEST_CONFIG", str(tmp_path / "config.toml"))


def settings_from(**env: str) -> Settings:
    import os

    return load_settings(environ={"COORDINATORD_CONFIG": os.environ["COORDINATORD_TEST_CONFIG"], **env})


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"COORDINATORD_BACKEND__MODE": "cluster"}, "needs backend.url (REDIS_URL) naming any one node"),
        ({"COORDINATORD_BACKEND__MODE": "sentinel"}, "needs backend.sentinels and backend.sentinel_master"),
        (
            {"COORDINATORD_BACKEND__MODE": "sentinel", "COORDINATORD_BACKEND__SENTINELS": "h:26379"},
            "needs backend.sentinel_master",
        ),
        (
            {
                "COORDINATORD_BACKEND__MODE": "cluster",
                "REDIS_URL": "redis://h:1",
                "UPSTASH_REDIS_REST_URL": "https://x",
            },
            "cannot be used with Upstash",
        ),
        ({"COORDINATORD_BACKEND__MODE": "cluster", "REDIS_URL": "unix:///tmp/r.sock"}, "needs TCP"),
        ({"COORDINATORD_BACKEND__MODE": "cluster", "REDIS_URL": "redis://h:1/3"}, "only database 0"),
        ({"COORDINATORD_BACKEND__SENTINELS": "h:26379"}, 'set backend.mode = "sentinel"'),
        (
            {"COORDINATORD_BACKEND__MODE": "sentinel", "COORDINATORD_BACKEND__SENTINELS": "h:x"},
            "is not host:port",
        ),
    ],
)
def test_a_mode_without_what_it_needs_is_refused_naming_the_fix(env: dict[str, str], says: str) -> None:
    """Each incomplete or contradictory topology setting stops start-up with the fix named."""
    with pytest.raises(ConfigError) as caught:
        settings_from(**env)
    assert says in str(caught.value)


def test_sentinels_read_as_commas_or_json_and_the_password_is_masked() -> None:
    """Sentinels come as a JSON list or host:port,host:port; no embedded server; password masked."""
    for given in ("a:1, b:2", '["a:1", "b:2"]'):
        settings = settings_from(
            COORDINATORD_BACKEND__MODE="sentinel",
            COORDINATORD_BACKEND__SENTINELS=given,
            COORDINATORD_BACKEND__SENTINEL_MASTER="m",
            COORDINATORD_BACKEND__SENTINEL_PASSWORD="s3cret",
        )
        assert settings.backend.sentinels == ("a:1", "b:2")
        assert not settings.uses_embedded_backend
        shown = effective_settings(settings)["backend"]
        assert shown["sentinel_password"] == "***" and "s3cret" not in str(shown)


def test_a_scan_pattern_inside_one_hash_tag_has_one_slot() -> None:
    """A namespace pattern names its slot; a pattern whose tag is not literal text names none."""
    tagged = pattern_slot("coord:{proj-1}:*")
    assert tagged is not None and tagged == pattern_slot("coord:{proj-1}:lock:*")
    assert pattern_slot("coord:*") is None
    assert pattern_slot("coord:{pro*}:x") is None  # the tag is not all literal
    assert pattern_slot("coord:{}:x") is None  # an empty tag hashes the whole key
