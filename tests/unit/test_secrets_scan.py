"""The secrets detector and the policy guard: pure, no store."""

from __future__ import annotations

import subprocess
import sys

import pytest

from coordinatord import log_scrub
from coordinatord.errors import SecretFoundError
from coordinatord.log_scrub import scrub_event, scrubbing
from coordinatord.secrets_scan import SecretScanner, redact
from coordinatord.services.secret_guard import SecretGuard, collect_notes
from coordinatord.settings import SecretSettings
from tests.secret_corpus import NEAR_MISSES, SECRETS


@pytest.mark.parametrize(("kind", "text"), SECRETS, ids=[f"{i}-{k}" for i, (k, _) in enumerate(SECRETS)])
def test_every_secret_is_found_with_its_kind(kind: str, text: str) -> None:
    """Each corpus secret is found as its kind, also inside prose, at the right offset."""
    scanner = SecretScanner()
    assert kind in {f.kind for f in scanner.scan(text)}
    prefix = "deploy notes: "
    found = scanner.scan(prefix + text + " (rotate monthly)")
    assert found and found[0].start >= len(prefix)
    assert all(f.end <= len(prefix) + len(text) for f in found)


@pytest.mark.parametrize("text", NEAR_MISSES, ids=[str(i) for i in range(len(NEAR_MISSES))])
def test_no_near_miss_is_found(text: str) -> None:
    """UUIDs, SHAs, base64, prose about passwords, URLs without credentials... are no secrets."""
    assert SecretScanner().scan(text) == []


def test_corpus_sizes() -> None:
    """The issue asks for at least 30 of each."""
    assert len(SECRETS) >= 30 and len(NEAR_MISSES) >= 30


def test_redaction_removes_every_secret_byte_and_is_stable() -> None:
    """Redacted text holds no secret text, names the kind, and scanning it again finds nothing."""
    scanner = SecretScanner()
    for kind, text in SECRETS:
        clean = redact(text, scanner.scan(text))
        assert f"[REDACTED:{kind}]" in clean
        assert scanner.scan(clean) == [], clean


def test_allowlist_lets_a_matching_secret_through() -> None:
    """secrets.allow patterns are matched against the found secret's text."""
    token = SECRETS[10][1]
    assert SecretScanner(allow=[token[:10]]).scan(f"use {token}") == []
    assert SecretScanner(allow=["^nothing$"]).scan(f"use {token}")


def test_refusal_names_kind_field_and_offset_never_the_value() -> None:
    """refuse: the error says which kind, where (field, character offset), not the secret."""
    token = SECRETS[10][1]
    with pytest.raises(SecretFoundError) as caught:
        SecretGuard().text(f"my token {token}", "value")
    message = str(caught.value)
    assert "github_token in 'value' at character 9" in message
    assert token not in message and token[4:20] not in message
    assert caught.value.findings == (("github_token", "value", 9),)


def test_json_paths_and_keys_named_for_secrets() -> None:
    """A JSON value is walked: the path names the field; a "password" key makes its value count;
    a key holding a secret is shown redacted in the path."""
    token = SECRETS[10][1]
    guard = SecretGuard()
    doc = {"db": {"password": "Zq8#kLm2pW"}, "list": ["ok", f"x {token}"], token: 1}
    with pytest.raises(SecretFoundError) as caught:
        guard.json(doc, "context")
    where = {(kind, field, offset) for kind, field, offset in caught.value.findings}
    assert ("keyword_secret", "context.db.password", 0) in where
    assert ("github_token", "context.list[1]", 2) in where
    assert ("github_token", "context['[REDACTED:github_token]'] (the key)", 0) in where
    assert token not in str(caught.value)
    redacted = SecretGuard(SecretSettings(policy="redact")).json(doc, "context")
    assert token not in repr(redacted) and "Zq8#kLm2pW" not in repr(redacted)
    assert redacted["db"]["password"] == "[REDACTED:keyword_secret]"


def test_warn_and_off_store_as_given() -> None:
    """warn: the value is unchanged and a note (without the value) is collected; off: no scan."""
    token = SECRETS[10][1]
    with collect_notes() as notes:
        assert SecretGuard(SecretSettings(policy="warn")).text(token, "body") == token
    assert len(notes) == 1 and "github_token in 'body'" in notes[0] and token not in notes[0]
    assert SecretGuard(SecretSettings(policy="off")).text(token, "body") == token


def test_archive_redaction_follows_secrets_archive() -> None:
    """Archives are redacted whatever the policy, unless secrets.archive = "keep"."""
    token = SECRETS[10][1]
    data = {"context": {"t": token}, "history": [{"message": token}]}
    assert token not in repr(SecretGuard(SecretSettings(policy="off")).for_archive(data))
    assert SecretGuard(SecretSettings(archive="keep")).for_archive(data) is data


def test_bad_allow_pattern_is_a_settings_error() -> None:
    """An allowlist pattern that does not compile is refused with the pattern named."""
    with pytest.raises(ValueError, match=r"secrets\.allow"):
        SecretSettings(allow=("(unclosed",))


def test_shim_does_not_import_the_detector() -> None:
    """The detector's import stays off the shim's start."""
    code = (
        "import sys, coordinatord.shim.relay, coordinatord.cli; "
        "print('coordinatord.secrets_scan' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_identifiers_refused_under_refuse_and_redact_naming_argument_and_kind() -> None:
    """A secret in an identifier is refused under refuse and redact alike (a redacted name
    would address something else); the error names argument, kind and offset, never the text."""
    token = SECRETS[10][1]
    for policy in ("refuse", "redact"):
        guard = SecretGuard(SecretSettings(policy=policy))
        assert guard.identifiers([("key", "agent:context:s1"), ("keys[0]", "plain")]) is None
        with pytest.raises(SecretFoundError) as caught:
            guard.identifiers([("key", "ok"), ("keys[1]", f"cache:{token}")])
        message = str(caught.value)
        expected = "refused: an identifier holds a secret (github_token in 'keys[1]' at character 6)"
        assert message.startswith(expected)
        assert token not in message and caught.value.findings == (("github_token", "keys[1]", 6),)


def test_identifiers_under_warn_give_the_secrets_to_scrub_and_a_note() -> None:
    """warn: no error; each secret's text with its marker (for the log), and a note naming
    argument and kind. off: nothing is scanned."""
    token = SECRETS[10][1]
    warning = SecretGuard(SecretSettings(policy="warn")).identifiers([("task_id", f"t-{token}")])
    assert warning is not None and warning.secrets == {token: "[REDACTED:github_token]"}
    assert "github_token in 'task_id' at character 2" in warning.note and token not in warning.note
    assert SecretGuard(SecretSettings(policy="off")).identifiers([("task_id", token)]) is None


def test_agent_names_are_refused_under_every_policy_but_off() -> None:
    """The agent name is in every log line of its connection: a secret there is refused even
    under warn; shown() gives the form the log may hold."""
    token = SECRETS[10][1]
    for policy in ("refuse", "redact", "warn"):
        guard = SecretGuard(SecretSettings(policy=policy))
        guard.check_agent("kilocode-main")
        with pytest.raises(SecretFoundError, match="the agent name holds a secret"):
            guard.check_agent(f"bot-{token}")
        assert guard.shown(f"bot {token}") == "bot [REDACTED:github_token]"
    off = SecretGuard(SecretSettings(policy="off"))
    off.check_agent(token)
    assert off.shown(token) == token


def test_scrubbing_applies_only_inside_its_block() -> None:
    """log_scrub: a secret is replaced in scrubbed text and log events while the block runs,
    longest first; outside it (and for an empty mapping) nothing changes."""
    token = SECRETS[10][1]
    event = {"event": "tool_call", "key": f"cache:{token}", "duration_ms": 1.0}
    with scrubbing({}):
        assert not log_scrub.active()
    with scrubbing({token[:10]: "[short]", token: "[REDACTED:github_token]"}):
        assert log_scrub.scrub(f"a {token} b") == "a [REDACTED:github_token] b"
        assert scrub_event(None, "info", dict(event))["key"] == "cache:[REDACTED:github_token]"
    assert log_scrub.scrub(token) == token and scrub_event(None, "info", dict(event)) == event
