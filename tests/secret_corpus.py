"""Secrets in real formats and near-misses that are not, for the secrets tests.

Every secret is generated here from parts and a seeded generator: none is real, and no source
line holds a contiguous token a scanner (or a forge's push protection) would take for one.
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import uuid

_rng = random.Random(20260213)
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


def _pick(alphabet: str, n: int) -> str:
    # Mixed case and a digit guaranteed, as real keys have (and as the detector asks of sk- keys).
    body = [_rng.choice(alphabet) for _ in range(n - 3)] + ["Q", "z", "7"]
    _rng.shuffle(body)
    return "".join(body)


def _pem(label: str, lines: int = 8) -> str:
    dashes = "-" * 5
    body = "\n".join(base64.b64encode(_rng.randbytes(48)).decode() for _ in range(lines))
    return f"{dashes}BEGIN {label}{dashes}\n{body}\n{dashes}END {label}{dashes}"


def _cat(*parts: str) -> str:
    return "".join(parts)


AWS_ID = _cat("AK", "IA", _pick(string.ascii_uppercase + string.digits, 16).upper())
AWS_SECRET = _pick(B64, 40)

SECRETS: list[tuple[str, str]] = [
    ("private_key", _pem("RSA PRIVATE KEY")),
    ("private_key", _pem("OPENSSH PRIVATE KEY")),
    ("private_key", _pem("EC PRIVATE KEY", 3)),
    ("private_key", _pem("PRIVATE KEY")),
    ("private_key", _pem("ENCRYPTED PRIVATE KEY")),
    ("private_key", _pem("PGP PRIVATE KEY BLOCK")),
    ("aws_access_key_id", AWS_ID),
    ("aws_access_key_id", _cat("AS", "IA", _pick(string.ascii_uppercase + string.digits, 16).upper())),
    ("aws_secret_key", _cat("aws_secret", "_access_key = ", AWS_SECRET)),
    ("aws_secret_key", _cat('{"AccessKeyId": "', AWS_ID, '", "Secret', 'AccessKey": "', AWS_SECRET, '"}')),
    ("github_token", _cat("gh", "p_", _pick(ALNUM, 36))),
    ("github_token", _cat("gh", "o_", _pick(ALNUM, 36))),
    ("github_token", _cat("gh", "s_", _pick(ALNUM, 36))),
    ("github_token", _cat("gh", "u_", _pick(ALNUM, 36))),
    ("github_token", _cat("github", "_pat_", "11", _pick(ALNUM, 20), "_", _pick(ALNUM, 59))),
    ("gitlab_token", _cat("gl", "pat-", _pick(ALNUM, 20))),
    ("gitlab_token", _cat("gl", "pat-", _pick(ALNUM + "-_", 26))),
    ("slack_token", _cat("xo", "xb-", str(_rng.randrange(10**11, 10**12)), "-", _pick(ALNUM, 24))),
    ("slack_token", _cat("xo", "xp-", str(_rng.randrange(10**11, 10**12)), "-", _pick(ALNUM, 32))),
    (
        "slack_token",
        _cat(
            "https://hooks.",
            "slack.com/services/T",
            _pick(ALNUM, 8),
            "/B",
            _pick(ALNUM, 8),
            "/",
            _pick(ALNUM, 24),
        ),
    ),
    ("openai_key", _cat("s", "k-", _pick(ALNUM, 48))),
    ("openai_key", _cat("s", "k-proj-", _pick(ALNUM + "-_", 120))),
    ("openai_key", _cat("s", "k-svcacct-", _pick(ALNUM + "-_", 60))),
    ("openai_key", _cat("s", "k-ant-api03-", _pick(ALNUM + "-_", 80))),
    ("stripe_key", _cat("s", "k_", "live_", _pick(ALNUM, 24))),
    ("stripe_key", _cat("r", "k_", "live_", _pick(ALNUM, 32))),
    ("url_credentials", _cat("postgres://app:", _pick(ALNUM, 16), "@db.internal:5432/app")),
    ("url_credentials", _cat("redis://default:", _pick(ALNUM, 20), "@cache.example.com:6379/0")),
    ("url_credentials", _cat("https://deploy:", _pick(ALNUM, 12), "@git.example.com/org/repo.git")),
    ("keyword_secret", _cat("pass", "word=", _pick(ALNUM + "#%!", 14))),
    ("keyword_secret", _cat("tok", "en: ", hashlib.sha256(_rng.randbytes(8)).hexdigest())),
    ("keyword_secret", _cat('{"api', '_key": "', _pick(ALNUM, 32), '"}')),
    ("keyword_secret", _cat('"pass', 'word": "', _pick(ALNUM + "!@#", 12), '"')),
    ("keyword_secret", _cat("DB_SEC", "RET=", _pick(ALNUM, 24))),
    ("keyword_secret", _cat("client", "_secret = '", _pick(ALNUM + "-_", 30), "'")),
]

_png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + _rng.randbytes(600)).decode()

NEAR_MISSES: list[str] = [
    str(uuid.UUID(int=_rng.getrandbits(128))),
    f"session {uuid.UUID(int=_rng.getrandbits(128))} resumed",
    f'{{"id": "{uuid.UUID(int=_rng.getrandbits(128))}"}}',
    hashlib.sha1(b"commit one", usedforsecurity=False).hexdigest(),
    "fixed in commit " + hashlib.sha1(b"commit two", usedforsecurity=False).hexdigest()[:12],
    "git log " + hashlib.sha1(b"commit three", usedforsecurity=False).hexdigest() + "..HEAD",
    hashlib.sha256(b"artifact").hexdigest(),
    f'{{"digest": "sha256:{hashlib.sha256(b"layer").hexdigest()}"}}',
    "data:image/png;base64," + _png,
    base64.b64encode(_rng.randbytes(300)).decode(),
    "Reset your password from the account page, then log in again.",
    "The password field must not be empty; show an error under it.",
    "password=hunter2",
    "password = secret",
    "password: changeme",
    "password=${DB_PASSWORD}",
    'password = os.environ["DB_PASSWORD"]',
    "token = get_token(user_id)",
    "token=<your-token-here>",
    '{"max_tokens": 4096, "token_count": 1234}',
    '{"next_page_token": null}',
    "https://example.com/docs/api?page=2#auth",
    "git@github.com:org/repo.git",
    "redis://127.0.0.1:6379/0",
    "postgres://app@db.internal:5432/app",
    "mail me at dev.team@example.com",
    "sk-learn-style-kebab-case-branch-name",
    "ghp_short",
    "The AKIA prefix marks AWS access key ids.",
    "-----BEGIN CERTIFICATE-----\n"
    + base64.b64encode(_rng.randbytes(90)).decode()
    + "\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\n"
    + base64.b64encode(_rng.randbytes(90)).decode()
    + "\n-----END PUBLIC KEY-----",
    "ssh-ed25519 " + base64.b64encode(_rng.randbytes(51)).decode() + " dev@laptop",
    "src/auth/token_parser.py: the secret to fast tests is fewer sleeps",
    "TOKEN_TTL=3600 and SECRET_ROTATION_DAYS=30",
    "2026-02-13T04:00:00.000Z v1.12.3 build 4f2a9c",
]
