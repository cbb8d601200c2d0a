"""Turn-level recall of coordinatord's ranking against plain BM25 baselines (issue 22).

For every question, each method ranks the passages of the question's corpus; recall@k is the share
of the question's answering passages among the top k, averaged over questions. Results are printed
as a table per data set and split and written as JSON to bench/results/ (git-ignored).

    .venv/bin/python bench/recall_eval.py                      # every installed set, both splits
    .venv/bin/python bench/recall_eval.py --locomo locomo10.json
    .venv/bin/python bench/recall_eval.py --tune               # grid search on the tune split only

The data sets and their splits are described in bench/recall_data.py and docs/recall.md. Only the
standard library and coordinatord's own dependencies are used.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recall_data import (
    Corpus,
    DataMissing,
    Question,
    load_debfaq,
    load_gitfaq,
    load_locomo,
    load_pyfaq,
    load_synth,
)

from coordinatord.recall.rank import Bm25, Passage, Ranker, RankParams
from coordinatord.recall.tokenise import plain_tokenise, tokenise

KS = (5, 10)
Method = Callable[[Corpus], Callable[[str, int], list[Hashable]]]


def _windows(passages: Sequence[Passage], radius: int) -> list[str]:
    """Each passage's text with up to ``radius`` neighbours of its group on each side."""
    order: dict[Hashable, list[int]] = {}
    for index, passage in enumerate(passages):
        order.setdefault(passage.group if passage.group is not None else ("alone", index), []).append(index)
    windows = [""] * len(passages)
    for members in order.values():
        members.sort(key=lambda i: passages[i].position)
        for slot, index in enumerate(members):
            around = members[max(0, slot - radius) : slot + radius + 1]
            windows[index] = " ".join(passages[i].text for i in around)
    return windows


def bm25_method(
    *, radius: int, tokeniser: Callable[[str], list[str]], k1: float = 1.5, b: float = 0.75
) -> Method:
    """Plain BM25, one passage (``radius`` 0) or one window of passages a document."""

    def build(corpus: Corpus) -> Callable[[str, int], list[Hashable]]:
        texts = _windows(corpus.passages, radius) if radius else [p.text for p in corpus.passages]
        index = Bm25([tokeniser(text) for text in texts], k1=k1, b=b)

        def search(query: str, k: int) -> list[Hashable]:
            return [corpus.passages[i].key for i, _ in index.top(tokeniser(query), k)]

        return search

    return build


_RANKERS: dict[str, Ranker] = {}


def ranker_method(params: RankParams) -> Method:
    """coordinatord's ranker (coordinatord/recall/rank.py) with ``params``."""

    def build(corpus: Corpus) -> Callable[[str, int], list[Hashable]]:
        # One ranker per corpus serves every parameter set (it keeps neighbours up to 3 turns away).
        ranker = _RANKERS.get(corpus.name)
        if ranker is None:
            ranker = _RANKERS[corpus.name] = Ranker(corpus.passages, context_turns=3)

        def search(query: str, k: int) -> list[Hashable]:
            return [hit.key for hit in ranker.search(query, params=params, limit=k)]

        return search

    return build


TUNED = RankParams()
METHODS: dict[str, Method] = {
    "bm25 turn": bm25_method(radius=0, tokeniser=plain_tokenise),
    "bm25 ±2 turns": bm25_method(radius=2, tokeniser=plain_tokenise),
    "bm25 ±2, code tokens": bm25_method(radius=2, tokeniser=tokenise),
    "ranker, first stage only": ranker_method(
        dataclasses.replace(TUNED, proximity_weight=0.0, session_prior=0.0)
    ),
    "ranker (coordinatord)": ranker_method(TUNED),
}


def recall_at(ranked: Sequence[Hashable], evidence: frozenset[Hashable], k: int) -> float:
    """Share of ``evidence`` among the first ``k`` of ``ranked``."""
    return len(evidence.intersection(ranked[:k])) / len(evidence)


def evaluate(method: Method, corpora: Sequence[Corpus], split: str | None) -> dict[str, float]:
    """Mean recall@k over the questions of ``split`` (None: all) in ``corpora``, and their count."""
    sums = dict.fromkeys(KS, 0.0)
    count = 0
    for corpus in corpora:
        questions: list[Question] = [q for q in corpus.questions if split is None or q.split == split]
        if not questions:
            continue
        search = method(corpus)
        for question in questions:
            ranked = search(question.text, max(KS))
            for k in KS:
                sums[k] += recall_at(ranked, question.evidence, k)
            count += 1
    result = {f"recall@{k}": (sums[k] / count if count else 0.0) for k in KS}
    result["questions"] = float(count)
    return result


def load_sets(locomo: Path | None) -> dict[str, list[Corpus]]:
    """Every evaluation set that is installed here (a missing one is reported and skipped)."""
    sets: dict[str, list[Corpus]] = {}
    loaders: list[tuple[str, Callable[[], list[Corpus]]]] = [
        ("pyfaq", lambda: [load_pyfaq()]),
        ("debfaq", lambda: [load_debfaq()]),
        ("gitfaq", lambda: [load_gitfaq()]),
        ("synth", load_synth),
    ]
    for name, loader in loaders:
        try:
            sets[name] = loader()
        except DataMissing as missing:
            print(f"skipped {missing}", file=sys.stderr)
    if locomo is not None:
        sets["locomo"] = load_locomo(locomo)
    return sets


def tune(sets: dict[str, list[Corpus]]) -> RankParams:
    """A small grid search of the ranker's parameters on the tune split: the mean recall@5 over the
    data sets (each set counts once, whatever its size) decides."""
    grid: dict[str, list[Any]] = {
        "context_weight": [0.3, 0.5, 0.8],
        "context_decay": [0.5, 0.8],
        "context_turns": [2, 3],
        "session_prior": [0.0, 0.3, 0.6],
        "proximity_weight": [0.0, 0.1, 0.2],
        "k1": [0.9, 1.2, 1.6],
        "speaker_weight": [0.0, 0.5],
    }
    best: tuple[float, RankParams] | None = None
    for values in itertools.product(*grid.values()):
        params = dataclasses.replace(TUNED, **dict(zip(grid, values, strict=True)))
        score = statistics.mean(
            evaluate(ranker_method(params), corpora, "tune")["recall@5"] for corpora in sets.values()
        )
        if best is None or score > best[0]:
            best = (score, params)
            print(f"{score:.4f} {dict(zip(grid, values, strict=True))}", flush=True)
    assert best is not None
    return best[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Run every method on every installed set and both splits; print the table; write JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--locomo", type=Path, help="a local copy of LoCoMo's locomo10.json to evaluate too")
    parser.add_argument("--tune", action="store_true", help="grid-search the ranker on the tune split only")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/recall-<UTC>.json)")
    args = parser.parse_args(argv)
    sets = load_sets(args.locomo)
    if not sets:
        print("no evaluation set is installed (see bench/recall_data.py)", file=sys.stderr)
        return 1
    for name, corpora in sets.items():
        questions = [q for c in corpora for q in c.questions]
        passages = sum(len(c.passages) for c in corpora)
        tuned = sum(q.split == "tune" for q in questions)
        tested = len(questions) - tuned
        print(f"{name}: {passages} passages, {len(questions)} questions ({tuned} tune, {tested} test)")
    if args.tune:
        print(tune(sets))
        return 0
    rows = []
    started = time.perf_counter()
    for name, corpora in sets.items():
        for split in ("tune", "test"):
            for method_name, method in METHODS.items():
                result = evaluate(method, corpora, split)
                rows.append({"set": name, "split": split, "method": method_name, **result})
    header = f"{'set':<8} {'split':<5} {'method':<26} {'r@5':>6} {'r@10':>6} {'n':>5}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['set']:<8} {row['split']:<5} {row['method']:<26} "
            f"{row['recall@5']:>6.3f} {row['recall@10']:>6.3f} {int(row['questions']):>5}"
        )
    out = args.json or Path(__file__).resolve().parent / "results" / (
        "recall-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ".json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"params": dataclasses.asdict(TUNED), "rows": rows, "seconds": time.perf_counter() - started},
            indent=2,
        )
    )
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
