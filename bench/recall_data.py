"""Evaluation sets for bench/recall_eval.py: questions paired with the passages that answer them.

No long-conversation benchmark (LoCoMo, LongMemEval) ships inside a package this machine can
install (checked: the harness packages on PyPI and npm download the data from elsewhere at run time,
which is not reachable here). So the evaluation uses what is public and installable, read at run
time from the installed package (nothing is copied into this repository):

* ``pyfaq``: the Python FAQ (Debian package ``python3.11-doc``; PSF licence). Every FAQ page is a
  *session*, every paragraph of an answer a *turn*; each FAQ question, written by people, is a
  query whose answering turns are its answer's paragraphs. The question headings themselves are
  not in the corpus.
* ``debfaq``: the Debian FAQ (Debian package ``debian-faq``; GPL-2+), the same way, chapters as
  sessions. A second, independent source: tuned on neither's test half, reported on both.
* ``gitfaq``: Git's FAQ, gitfaq(7) (Debian package ``git-doc``; GPL-2): few questions (about 20)
  but the most code-laden (config keys, commands, environment variables).
* ``synth``: generated multi-session conversations between a developer and coding agents, with
  questions about facts that are stated across a question turn and its reply, identifiers in
  several spellings, and the same names recurring in unrelated sessions. Made by a seeded
  generator below, so it is what its author thought agent history looks like: a check of code
  tokenising and context, not evidence about real data.
* ``locomo``: the LoCoMo benchmark file (``locomo10.json``, CC BY-NC 4.0) when you have it locally
  (``--locomo PATH``): each conversation is its own corpus, ``D3:5`` evidence ids are turns.

Each question is in the ``tune`` or the ``test`` split by a hash of its id: parameters are chosen on
``tune`` only and figures reported on both.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path

from coordinatord.recall.rank import Passage

PYFAQ_GLOB = "/usr/share/doc/python3*/html/_sources/faq"
DEBFAQ_TEXT = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")
GITFAQ_TEXT = Path("/usr/share/doc/git-doc/gitfaq.txt")


@dataclass(frozen=True)
class Question:
    """One query, the keys of the passages that answer it, and its split (``tune`` or ``test``)."""

    qid: str
    text: str
    evidence: frozenset[Hashable]
    split: str


@dataclass(frozen=True)
class Corpus:
    """Passages searched together and the questions asked of them."""

    name: str
    passages: list[Passage]
    questions: list[Question]


def split_of(qid: str) -> str:
    """``tune`` or ``test``, from a stable hash of the question id (about half each)."""
    return "tune" if hashlib.sha256(qid.encode()).digest()[0] % 2 == 0 else "test"


class DataMissing(Exception):
    """An evaluation set's source is not installed; the message says how to install it."""


# ---------------------------------------------------------------- FAQ documents


def _paragraphs(lines: list[str]) -> list[str]:
    """Blank-line separated paragraphs; indented blocks, list items and directives join the paragraph
    before them (a code sample or a list belongs to the sentence that introduces it)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    merged: list[str] = []
    base_indent = min((len(b[0]) - len(b[0].lstrip()) for b in blocks), default=0)
    for block in blocks:
        first = block[0]
        indent = len(first) - len(first.lstrip())
        stripped = first.strip()
        if stripped.startswith(".. _") or stripped in {".. only:: html", ".. contents::"}:
            continue
        joins = indent > base_indent or stripped.startswith(("* ", "- ", ".. ", ">>>", "o "))
        text = " ".join(part.strip() for part in block)
        if joins and merged:
            merged[-1] = f"{merged[-1]}\n{text}"
        else:
            merged.append(text)
    return merged


def _faq_corpus(name: str, pages: list[tuple[str, list[tuple[str, list[str]]]]], max_answer: int) -> Corpus:
    """A corpus from FAQ pages, each a list of (question, answer lines)."""
    passages: list[Passage] = []
    questions: list[Question] = []
    for page, entries in pages:
        position = 0
        for number, (question, answer) in enumerate(entries):
            keys = []
            for paragraph in _paragraphs(answer):
                key = (page, position)
                passages.append(Passage(key=key, text=paragraph, group=page, position=position))
                keys.append(key)
                position += 1
            if 1 <= len(keys) <= max_answer:
                qid = f"{name}:{page}:{number}"
                questions.append(Question(qid, question, frozenset(keys), split_of(qid)))
    return Corpus(name, passages, questions)


def load_pyfaq(max_answer: int = 4) -> Corpus:
    """The Python FAQ from the installed ``python3.X-doc`` package."""
    found = sorted(Path("/").glob(PYFAQ_GLOB.lstrip("/")))
    if not found:
        raise DataMissing("pyfaq: the Python FAQ sources are not installed: apt-get install python3.11-doc")
    pages = []
    for path in sorted(found[-1].glob("*.rst.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        entries: list[tuple[str, list[str]]] = []
        i = 0
        while i < len(lines):
            underline = lines[i + 1] if i + 1 < len(lines) else ""
            if (
                lines[i].strip()
                and re.fullmatch(r"[-=~^]{4,}", underline)
                and not re.fullmatch(r"[-=]+", lines[i])
            ):
                if underline[0] == "-":
                    entries.append((lines[i].strip(), []))
                else:
                    entries.append(("", []))  # a section title: its text is not an answer
                i += 2
                continue
            if entries and not re.fullmatch(r"[-=~^]{4,}", lines[i]):
                entries[-1][1].append(lines[i])
            i += 1
        pages.append((path.name.split(".")[0], [e for e in entries if e[0]]))
    return _faq_corpus("pyfaq", pages, max_answer)


def load_debfaq(max_answer: int = 4) -> Corpus:
    """The Debian FAQ from the installed ``debian-faq`` package (its plain-text edition)."""
    if not DEBFAQ_TEXT.exists():
        raise DataMissing("debfaq: the Debian FAQ is not installed: apt-get install debian-faq")
    lines = gzip.decompress(DEBFAQ_TEXT.read_bytes()).decode("utf-8").splitlines()
    pages: list[tuple[str, list[tuple[str, list[str]]]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        chapter = re.match(r"^Chapter\s(\d+)\.\s", line)
        question = re.match(r"^(\d+)\.(\d+)\.\s+(.*)", line)  # \s: the FAQ puts a no-break space there
        if chapter:
            pages.append((f"ch{chapter.group(1)}", []))
        elif question and pages:
            text = [question.group(3)]
            while i + 1 < len(lines) and lines[i + 1].strip() and not lines[i + 1].startswith(" "):
                i += 1
                text.append(lines[i].strip())
            pages[-1][1].append((" ".join(text), []))
        elif pages and pages[-1][1]:
            pages[-1][1][-1][1].append(line)
        i += 1
    return _faq_corpus("debfaq", pages, max_answer)


def load_gitfaq(max_answer: int = 4) -> Corpus:
    """Git's FAQ (gitfaq(7), AsciiDoc source) from the installed ``git-doc`` package."""
    if not GITFAQ_TEXT.exists():
        raise DataMissing("gitfaq: Git's FAQ is not installed: apt-get install git-doc")
    lines = GITFAQ_TEXT.read_text(encoding="utf-8").splitlines()
    pages: list[tuple[str, list[tuple[str, list[str]]]]] = []
    for i, line in enumerate(lines):
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        if re.fullmatch(r"-{3,}", underline) and line.strip() and not re.fullmatch(r"-+", line):
            pages.append((line.strip().lower(), []))
        elif re.fullmatch(r"-{3,}|\[\[.*\]\]", line) or not pages:
            continue
        elif line.endswith("::") and not line.startswith((" ", "\t")):
            pages[-1][1].append((line[:-2], []))
        elif pages[-1][1]:
            # AsciiDoc joins list continuations with a lone "+": a paragraph break here.
            pages[-1][1][-1][1].append("" if line == "+" else line.lstrip("\t"))
    return _faq_corpus("gitfaq", [p for p in pages if p[1]], max_answer)


# ---------------------------------------------------------------- LoCoMo (a local file, if you have it)


def load_locomo(path: Path) -> list[Corpus]:
    """LoCoMo's ``locomo10.json``: one corpus per conversation, turns keyed by their ``D<s>:<t>`` id."""
    corpora = []
    for sample in json.loads(path.read_text(encoding="utf-8")):
        conversation = sample["conversation"]
        passages = []
        sessions = sorted((int(k.split("_")[1]), k) for k in conversation if re.fullmatch(r"session_\d+", k))
        for number, key in sessions:
            for position, turn in enumerate(conversation[key]):
                text = turn["text"]
                if turn.get("blip_caption"):
                    text = f"{text} [shares a photo of {turn['blip_caption']}]"
                passages.append(
                    Passage(
                        key=turn["dia_id"],
                        text=text,
                        group=number,
                        position=position,
                        speaker=turn["speaker"],
                    )
                )
        questions = []
        for number, qa in enumerate(sample["qa"]):
            evidence = frozenset(e.strip() for item in qa.get("evidence", []) for e in str(item).split(";"))
            if not evidence or qa.get("category") == 5:  # 5: adversarial, unanswerable by design
                continue
            qid = f"{sample['sample_id']}:{number}"
            questions.append(Question(qid, qa["question"], evidence, split_of(qid)))
        corpora.append(Corpus(f"locomo:{sample['sample_id']}", passages, questions))
    return corpora


# ---------------------------------------------------------------- the generated set

_COMPONENTS = [
    ("fetchUserProfile", "fetch_user_profile", "user profile fetch"),
    ("RetryPolicy", "retry_policy", "retry policy"),
    ("LockManager", "lock_manager", "lock manager"),
    ("SessionStore", "session_store", "session store"),
    ("TokenBucket", "token_bucket", "rate limiter bucket"),
    ("ConfigLoader", "config_loader", "configuration loader"),
    ("BackendClock", "backend_clock", "backend clock"),
    ("TaskGraph", "task_graph", "task dependency graph"),
    ("ShimReader", "shim_reader", "shim line reader"),
    ("CacheWarmer", "cache_warmer", "cache warm-up job"),
    ("PaymentWebhook", "payment_webhook", "payment webhook handler"),
    ("SearchIndexer", "search_indexer", "search indexing worker"),
    ("AuthMiddleware", "auth_middleware", "authentication middleware"),
    ("ExportJob", "export_job", "nightly export"),
    ("MigrationRunner", "migration_runner", "database migrations"),
    ("WebsocketHub", "websocket_hub", "websocket fan-out"),
]
_PATHS = ["src/api/{s}.py", "lib/{s}/core.py", "services/{s}.py", "app/{s}/handlers.py", "pkg/{s}/main.go"]
_FAULTS = [
    (
        "HTTP 503 from the upstream",
        "the upstream answered 503 Service Unavailable",
        "service unavailable errors",
    ),
    ("ECONNRESET", "connections reset by the peer", "connection resets"),
    ("E1102 in the linter", "lint rule E1102 (not callable)", "a lint failure"),
    ("asyncio.TimeoutError", "a timeout inside the event loop", "timeouts"),
    ("OOMKilled pods", "the container ran out of memory", "memory exhaustion"),
    ("deadlock in the test suite", "two tasks waiting on each other's locks", "a hang"),
    ("KeyError: 'tenant_id'", "a missing tenant_id key in the payload", "a missing key"),
    ("SSL: CERTIFICATE_VERIFY_FAILED", "an expired intermediate certificate", "TLS verification failures"),
    ("HTTP 429 Too Many Requests", "the provider's rate limit", "throttling"),
    ("flaky test_reconnect", "a race between reconnect and shutdown", "an intermittent test failure"),
]
_CAUSES = [
    ("the connection pool was shared across event loops", "pool shared between loops"),
    ("the retry loop had no jitter so every client retried at once", "retries without jitter"),
    ("a config default of 5 ms instead of 5 s", "a timeout default in the wrong unit"),
    ("the cache key ignored the tenant", "cache key missing the tenant"),
    ("the index was rebuilt on every request", "rebuilding the index per request"),
    ("a stale lock file survived the crash", "stale lock file after a crash"),
    ("the clock on the worker drifted by two minutes", "clock drift on one worker"),
    ("the migration ran before the schema check", "migration ordering"),
    ("the payload was decoded twice", "double decoding"),
    ("a global mutable default argument", "shared mutable default"),
]
_FIXES = [
    ("pin the pool to one loop per thread", "pinning the pool per loop"),
    ("add full jitter to the exponential backoff", "jittered backoff"),
    ("read the value in seconds and validate it at start-up", "validating the unit at start"),
    ("include the tenant in the cache key", "tenant-aware cache keys"),
    ("build the index once and update it incrementally", "incremental index updates"),
    ("remove stale lock files older than the lease", "cleaning stale locks"),
    ("use the backend's clock instead of the local one", "one clock from the backend"),
    ("check the schema version before migrating", "schema check first"),
    ("decode once at the boundary", "decoding at the edge"),
    ("use None as the default and build the list inside", "no mutable defaults"),
]
_FILLER = [
    "Sounds good, go ahead.",
    "Let me run the tests again before we move on.",
    "I pushed the branch; CI is running now.",
    "Can you also update the changelog?",
    "Done. Anything else for today?",
    "I'll look at the logs after lunch.",
    "The review comments are addressed.",
    "Please keep the commit small so the diff is easy to read.",
    "Thanks, that matches what I saw locally.",
    "Let's park that and come back to it tomorrow.",
    "I added a docstring and a unit test for it.",
    "The benchmark numbers look the same as before.",
]
_SPEAKERS = ["Dana", "atlas-agent", "birch-agent"]


def _synth_turns(rng: random.Random, session: int) -> Iterator[tuple[str, str, str | None, str | None]]:
    """(speaker, text, question, evidence role) tuples of one generated session."""
    component = rng.choice(_COMPONENTS)
    fault = rng.choice(_FAULTS)
    cause = rng.choice(_CAUSES)
    fix = rng.choice(_FIXES)
    path = rng.choice(_PATHS).format(s=component[1])
    agent = rng.choice(_SPEAKERS[1:])
    for _ in range(rng.randint(1, 4)):
        yield (rng.choice(_SPEAKERS), rng.choice(_FILLER), None, None)
    yield (
        "Dana",
        f"We keep seeing {fault[0]} around {component[0]} in {path}. Can you dig in?",
        None,
        "mention",
    )
    for _ in range(rng.randint(0, 2)):
        yield (agent, rng.choice(_FILLER), None, None)
    yield (agent, f"Found it: {cause[0]}.", f"What caused the {fault[2]} in the {component[2]}?", "answer")
    yield ("Dana", "How do we fix that?", None, None)
    yield (
        agent,
        f"We should {fix[0]}. I'll change {component[1]} accordingly.",
        f"What did {agent} decide to do about {cause[1]}?",
        "answer",
    )
    # The same component and fault also show up in unrelated chatter elsewhere.
    for _ in range(rng.randint(2, 6)):
        other = rng.choice(_COMPONENTS)
        yield (
            rng.choice(_SPEAKERS),
            f"{rng.choice(_FILLER)} {other[0]} looks fine after the deploy.",
            None,
            None,
        )
    if rng.random() < 0.5:
        yield ("Dana", f"Also, {fault[0]} showed up once in staging, unrelated I think.", None, None)


def load_synth(conversations: int = 8, sessions: int = 24, seed: int = 22) -> list[Corpus]:
    """Generated conversations (see the module docstring): each conversation is one corpus."""
    rng = random.Random(seed)
    corpora = []
    for conversation in range(conversations):
        passages: list[Passage] = []
        questions: list[Question] = []
        for session in range(sessions):
            # Each answer is judged with the turn that set it up: the mention for the cause, the
            # cause for the fix.
            previous: Hashable | None = None
            for position, (speaker, text, question, role) in enumerate(_synth_turns(rng, session)):
                key = (session, position)
                passages.append(
                    Passage(key=key, text=text, group=session, position=position, speaker=speaker)
                )
                if question is not None:
                    qid = f"synth:{conversation}:{session}:{position}"
                    evidence = frozenset({key} if previous is None else {key, previous})
                    questions.append(Question(qid, question, evidence, split_of(qid)))
                if role is not None:
                    previous = key
        corpora.append(Corpus(f"synth:{conversation}", passages, questions))
    return corpora
