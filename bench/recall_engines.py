"""Which index engine for recall: SQLite FTS5 vs a pure-Python inverted index vs tantivy (issue 22).

Indexes a generated project of 100 000 session turns (sessions of 20 to 60 turns) and 10 000 memories
with each engine and measures the build time, query latency (p50/p99 over the queries), the peak
RSS of the process and the size on disk. Each engine runs in its own child process so that one's
memory does not count for another. Every engine indexes the same pre-tokenised text
(coordinatord/recall/tokenise.py), so tokenising is measured once, separately.

    .venv/bin/python bench/recall_engines.py                 # all engines (tantivy if installed)
    .venv/bin/python bench/recall_engines.py --turns 20000   # smaller

tantivy is not a dependency of coordinatord; `pip install tantivy` into the venv to include it.
Results go to bench/results/recall-engines-<UTC>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from coordinatord.recall.rank import Passage, Ranker, RankParams
from coordinatord.recall.tokenise import tokenise

CONTEXT = 2
CANDIDATES = 100
COMMON_SHARE = 0.05


def _vocabulary(rng: random.Random) -> list[str]:
    """English words from the FAQs when installed (else generated ones) plus code identifiers."""
    words: list[str] = []
    try:
        from recall_data import load_debfaq, load_pyfaq

        for corpus in (load_pyfaq(), load_debfaq()):
            for passage in corpus.passages:
                words.extend(passage.text.split())
    except Exception:
        words = []
    if len(words) < 1000:
        words = [
            "".join(rng.choice("abcdefghijklmnoprstu") for _ in range(rng.randint(3, 9)))
            for _ in range(20000)
        ]
    stems = [
        "fetch",
        "user",
        "profile",
        "retry",
        "lock",
        "session",
        "token",
        "cache",
        "index",
        "clock",
        "task",
    ]
    words.extend(f"{rng.choice(stems)}{rng.choice(stems).title()}{rng.randint(0, 300)}" for _ in range(5000))
    words.extend(f"src/{rng.choice(stems)}/{rng.choice(stems)}_{rng.randint(0, 99)}.py" for _ in range(2000))
    return words


def corpus(turns: int, memories: int, seed: int = 7) -> tuple[list[Passage], list[str]]:
    """A generated project: session turns in sessions, memories alone, and queries drawn from it."""
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    passages: list[Passage] = []
    session = 0
    while len(passages) < turns:
        for position in range(rng.randint(20, 60)):
            text = " ".join(rng.choices(vocabulary, k=rng.randint(6, 60)))
            passages.append(
                Passage(key=("turn", session, position), text=text, group=session, position=position)
            )
        session += 1
    del passages[turns:]
    for number in range(memories):
        passages.append(
            Passage(key=("memory", number), text=" ".join(rng.choices(vocabulary, k=rng.randint(8, 40))))
        )
    queries = [" ".join(rng.choices(vocabulary, k=rng.randint(2, 7))) for _ in range(200)]
    return passages, queries


def context_terms(passages: Sequence[Passage], terms: Sequence[list[str]]) -> list[list[str]]:
    """For each passage the terms of its up to CONTEXT neighbours on each side in its group."""
    context: list[list[str]] = [[] for _ in passages]
    for index, passage in enumerate(passages):
        if passage.group is None:
            continue
        for other in range(max(0, index - CONTEXT), min(len(passages), index + CONTEXT + 1)):
            if other != index and passages[other].group == passage.group:
                context[index].extend(terms[other])
    return context


def fts5_query(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression: any of the terms (each quoted, so no term is read as syntax)."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in dict.fromkeys(terms))


def run_fts5(
    passages: Sequence[Passage], terms: list[list[str]], queries: list[str], work: Path
) -> dict[str, float]:
    """SQLite FTS5: one row a passage, columns turn and context, pre-tokenised, bm25() weighted."""
    context = context_terms(passages, terms)
    path = work / "recall.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE VIRTUAL TABLE recall USING fts5("
        "turn, context, tokenize=\"unicode61 tokenchars '_'\", detail=column)"
    )
    started = time.perf_counter()
    with db:
        db.executemany(
            "INSERT INTO recall(rowid, turn, context) VALUES (?, ?, ?)",
            ((i + 1, " ".join(terms[i]), " ".join(context[i])) for i in range(len(passages))),
        )
    db.execute("INSERT INTO recall(recall) VALUES ('optimize')")
    db.commit()
    build = time.perf_counter() - started
    db.execute("CREATE VIRTUAL TABLE recall_terms USING fts5vocab(recall, 'row')")
    limit = COMMON_SHARE * len(passages)
    latencies = []
    for query in queries:
        started = time.perf_counter()
        # FTS5 scores every row that matches (no top-k pruning): a term found in a large share of
        # the rows is left out of the candidate query and counts in the re-rank only.
        query_terms = list(dict.fromkeys(tokenise(query)))
        frequencies = {
            term: count
            for term, count in db.execute(
                # Only placeholders are formatted in; the terms are bound parameters.
                f"SELECT term, doc FROM recall_terms WHERE term IN ({','.join('?' * len(query_terms))})",  # noqa: S608
                query_terms,
            )
        }
        selective = [t for t in query_terms if frequencies.get(t, 0) <= limit]
        if not selective:
            selective = sorted(frequencies, key=frequencies.__getitem__)[:1]
        expression = fts5_query(selective)
        if expression:
            db.execute(
                "SELECT rowid FROM recall WHERE recall MATCH ? ORDER BY bm25(recall, 1.0, 0.5) LIMIT ?",
                (expression, CANDIDATES),
            ).fetchall()
        latencies.append(time.perf_counter() - started)
    db.close()
    disk = sum(p.stat().st_size for p in work.iterdir())
    return {"build_s": build, **_quantiles(latencies), "disk_mb": disk / 1e6}


def run_fts5_rerank(
    passages: Sequence[Passage], terms: list[list[str]], queries: list[str], work: Path
) -> dict[str, float]:
    """The design proposed in docs/recall.md: FTS5 over each turn's own terms only (no context
    column: smaller, and a term's document frequency is not inflated by its neighbours) finds the
    candidates from the selective query terms; their neighbours are added; the ranker's BM25F
    (coordinatord.recall.rank.score_candidates) scores that small set in Python."""
    from collections import Counter

    from coordinatord.recall.rank import CandidateStats, score_candidates

    db = sqlite3.connect(work / "recall.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE VIRTUAL TABLE recall USING fts5(terms, tokenize=\"unicode61 tokenchars '_'\", detail=column)"
    )
    db.execute("CREATE TABLE place(id INTEGER PRIMARY KEY, grp INTEGER, pos INTEGER)")
    db.execute("CREATE INDEX place_grp_pos ON place(grp, pos)")
    started = time.perf_counter()
    with db:
        db.executemany(
            "INSERT INTO recall(rowid, terms) VALUES (?, ?)",
            ((i + 1, " ".join(terms[i])) for i in range(len(passages))),
        )
        db.executemany(
            "INSERT INTO place(id, grp, pos) VALUES (?, ?, ?)",
            ((i + 1, p.group, p.position) for i, p in enumerate(passages)),
        )
    db.execute("INSERT INTO recall(recall) VALUES ('optimize')")
    db.execute("CREATE VIRTUAL TABLE recall_terms USING fts5vocab(recall, 'row')")
    db.commit()
    build = time.perf_counter() - started
    count = len(passages)
    average = sum(len(t) for t in terms) / count
    params = RankParams(context_turns=CONTEXT)
    limit = COMMON_SHARE * count
    latencies = []
    for query in queries:
        started = time.perf_counter()
        query_terms = list(dict.fromkeys(tokenise(query)))
        marks = ",".join("?" * len(query_terms))
        frequencies = dict(
            db.execute(f"SELECT term, doc FROM recall_terms WHERE term IN ({marks})", query_terms)  # noqa: S608
        )
        selective = [t for t in query_terms if frequencies.get(t, 0) <= limit] or sorted(
            frequencies, key=frequencies.__getitem__
        )[:1]
        if selective:
            found = [
                row[0]
                for row in db.execute(
                    "SELECT rowid FROM recall WHERE recall MATCH ? ORDER BY rank LIMIT ?",
                    (fts5_query(selective), CANDIDATES // 2),
                )
            ]
            near: dict[Hashable, tuple[Hashable | None, int]] = {}
            for rowid in found:
                grp, pos = db.execute("SELECT grp, pos FROM place WHERE id = ?", (rowid,)).fetchone()
                if grp is None:
                    near[rowid] = (None, pos)
                    continue
                for other, other_pos in db.execute(
                    "SELECT id, pos FROM place WHERE grp = ? AND pos BETWEEN ? AND ?",
                    (grp, pos - CONTEXT, pos + CONTEXT),
                ):
                    near[other] = (grp, other_pos)
            rows = ",".join(str(r) for r in near)
            counts: dict[Hashable, Counter[str]] = {
                rowid: Counter(text.split())
                for rowid, text in db.execute(f"SELECT rowid, terms FROM recall WHERE rowid IN ({rows})")  # noqa: S608
            }
            stats = CandidateStats(count=count, average_length=average, document_frequency=frequencies)
            score_candidates(query_terms, counts, near, stats, params)
        latencies.append(time.perf_counter() - started)
    db.close()
    disk = sum(p.stat().st_size for p in work.iterdir())
    return {"build_s": build, **_quantiles(latencies), "disk_mb": disk / 1e6}


def run_python(
    passages: Sequence[Passage], terms: list[list[str]], queries: list[str], work: Path
) -> dict[str, float]:
    """coordinatord's pure-Python ranker kept in memory (tokenises again inside: build includes it)."""
    started = time.perf_counter()
    ranker = Ranker(passages, context_turns=CONTEXT)
    build = time.perf_counter() - started
    params = RankParams(context_turns=CONTEXT)
    latencies = []
    for query in queries:
        started = time.perf_counter()
        ranker.search(query, params=params, limit=10)
        latencies.append(time.perf_counter() - started)
    return {"build_s": build, **_quantiles(latencies), "disk_mb": 0.0}


def run_tantivy(
    passages: Sequence[Passage], terms: list[list[str]], queries: list[str], work: Path
) -> dict[str, float]:
    """tantivy (Rust, through its Python binding): fields turn and context, whitespace tokenizer."""
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=True, indexed=False, fast=True)
    builder.add_text_field("turn", stored=False, tokenizer_name="whitespace")
    builder.add_text_field("context", stored=False, tokenizer_name="whitespace")
    schema = builder.build()
    index = tantivy.Index(schema, path=str(work))
    context = context_terms(passages, terms)
    started = time.perf_counter()
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    for i in range(len(passages)):
        writer.add_document(tantivy.Document(id=i, turn=" ".join(terms[i]), context=" ".join(context[i])))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    build = time.perf_counter() - started
    searcher = index.searcher()
    latencies = []
    for query in queries:
        started = time.perf_counter()
        query_terms = list(dict.fromkeys(tokenise(query)))
        if query_terms:
            parsed = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Should, tantivy.Query.term_query(schema, field, term))
                    for term in query_terms
                    for field in ("turn", "context")
                ]
            )
            searcher.search(parsed, CANDIDATES)
        latencies.append(time.perf_counter() - started)
    disk = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    return {"build_s": build, **_quantiles(latencies), "disk_mb": disk / 1e6}


ENGINES: dict[str, Callable[[Sequence[Passage], list[list[str]], list[str], Path], dict[str, float]]] = {
    "sqlite-fts5": run_fts5,
    "sqlite-fts5-rerank": run_fts5_rerank,
    "pure-python": run_python,
    "tantivy": run_tantivy,
}


def _quantiles(latencies: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(latencies)
    return {
        "query_p50_ms": statistics.median(ordered) * 1e3,
        "query_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
    }


def child(engine: str, turns: int, memories: int) -> dict[str, float]:
    """Run one engine in this process and report its figures with this process's peak RSS."""
    passages, queries = corpus(turns, memories)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    terms = [tokenise(p.text) for p in passages]
    tokenise_s = time.perf_counter() - started
    work = Path(tempfile.mkdtemp(prefix="recall-engine-"))
    try:
        result = ENGINES[engine](passages, terms, queries, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**result, "tokenise_s": tokenise_s, "rss_peak_mb": peak, "rss_corpus_mb": base_rss}


def main(argv: Sequence[str] | None = None) -> int:
    """Run every engine in a child process and print and save the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=100_000)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--engine", choices=sorted(ENGINES), help="run only this engine, in this process")
    args = parser.parse_args(argv)
    if args.engine:
        print(json.dumps(child(args.engine, args.turns, args.memories)))
        return 0
    results = {}
    for engine in ENGINES:
        if engine == "tantivy":
            try:
                import tantivy  # noqa: F401
            except ImportError:
                print("tantivy: not installed, skipped", file=sys.stderr)
                continue
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--engine",
                engine,
                "--turns",
                str(args.turns),
                "--memories",
                str(args.memories),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"{engine}: failed\n{done.stderr}", file=sys.stderr)
            continue
        results[engine] = json.loads(done.stdout.strip().splitlines()[-1])
        print(engine, json.dumps({k: round(v, 2) for k, v in results[engine].items()}), flush=True)
    out = (
        Path(__file__).resolve().parent
        / "results"
        / ("recall-engines-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ".json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"turns": args.turns, "memories": args.memories, "results": results}, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
