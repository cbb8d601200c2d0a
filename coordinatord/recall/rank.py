"""Ranking for recall: BM25 over passages, a session turn scored together with its neighbours.

A turn of a conversation rarely answers a question alone: "Yes, it was the pool" answers "where did
the flaky test come from?" only with the turn before it. Scoring each turn as a document misses
such answers; scoring whole windows of turns as documents finds them but cannot tell which turn of
the window answers. Here every turn is still the unit that is ranked and returned, but its score is
BM25F (Robertson, Zaragoza & Taylor 2004) over fields: the turn's own text, its neighbours in the
same session at falling weights (the *context*), the speaker's name, and a prior from how well the
whole session matches the query. Term frequencies of the fields are weighted and summed *before*
BM25's saturation, so a term met in the turn and again in its neighbours counts more than once but
never more than a term's worth, and a query term matched only in the context still counts.

The second stage re-ranks the best candidates: a prior from the session's own match, near-duplicate
hits collapsed, superseded passages dropped, and two hooks off by default: a bonus when query terms
stand close together in the turn (it did not help on the tune split) and a recency boost.

Everything here is pure: passages in, ranked hits out; no I/O, no clock (the caller passes ``now``).
In the daemon an index engine finds candidates and ``score_candidates`` scores them the same way
(docs/recall.md); ``Ranker`` is the whole-corpus reference the evaluation in bench/ measures.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from coordinatord.recall.tokenise import iter_terms, tokenise

Tokeniser = Callable[[str], list[str]]


@dataclass(frozen=True)
class Passage:
    """One searchable text: a session turn, a memory, a task, a message or a knowledge-file part.

    ``group`` puts passages in one ordered sequence (a session's turns, in order of ``position``):
    only passages of one group are each other's context. A passage without a group stands alone.
    """

    key: Hashable
    text: str
    group: Hashable | None = None
    position: int = 0
    speaker: str | None = None
    at: float | None = None
    superseded: bool = False


@dataclass(frozen=True)
class RankParams:
    """The knobs of the ranker; the defaults were chosen by `bench/recall_eval.py --tune` on the tune
    split of every evaluation set (docs/recall.md)."""

    k1: float = 1.2
    b: float = 0.75
    turn_weight: float = 1.0
    # Context: neighbours up to `context_turns` away on each side, the nearest weighted
    # `context_weight`, each further one `context_decay` times the one before.
    context_turns: int = 2
    context_weight: float = 0.5
    context_decay: float = 0.8
    # A query word that names a passage's speaker matches that passage with this field weight.
    speaker_weight: float = 0.5
    # Second stage.
    rerank_depth: int = 100
    proximity_weight: float = 0.0
    proximity_span: int = 4
    session_prior: float = 0.3
    # Recency: a passage `half_life_s` old gets half of `recency_weight` as a relative boost.
    recency_weight: float = 0.0
    half_life_s: float = 30 * 86400.0


@dataclass(frozen=True)
class Hit:
    """One ranked passage: its key, its index in the ranker's passage list and its score."""

    key: Hashable
    index: int
    score: float


def idf(document_count: int, document_frequency: int) -> float:
    """BM25's inverse document frequency, in the non-negative form Lucene uses."""
    return math.log(1.0 + (document_count - document_frequency + 0.5) / (document_frequency + 0.5))


class Bm25:
    """Okapi BM25 over token lists, one list a document: the plain baseline and a building block."""

    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._lengths = [len(doc) for doc in documents]
        for index, doc in enumerate(documents):
            for term, count in Counter(doc).items():
                self._postings[term].append((index, count))
        self._count = len(documents)
        self._average = (sum(self._lengths) / self._count) if self._count else 1.0

    def scores(self, query_terms: Iterable[str]) -> dict[int, float]:
        """Document index to BM25 score, for the documents that match at least one query term."""
        scores: dict[int, float] = defaultdict(float)
        k1, b, average = self.k1, self.b, self._average or 1.0
        for term in set(query_terms):
            postings = self._postings.get(term)
            if not postings:
                continue
            weight = idf(self._count, len(postings))
            for index, count in postings:
                norm = k1 * (1.0 - b + b * self._lengths[index] / average)
                scores[index] += weight * count * (k1 + 1.0) / (count + norm)
        return scores

    def top(self, query_terms: Iterable[str], limit: int) -> list[tuple[int, float]]:
        """The ``limit`` best (document index, score) pairs, best first; ties by index."""
        ranked = sorted(self.scores(query_terms).items(), key=lambda item: (-item[1], item[0]))
        return ranked[:limit]


@dataclass(frozen=True)
class CandidateStats:
    """Corpus statistics an index engine keeps for BM25: passage count, mean length, and the
    document frequency of each query term (a term missing from the map is taken as in no passage)."""

    count: int
    average_length: float
    document_frequency: Mapping[str, int]


def score_candidates(
    query_terms: Sequence[str],
    counts: Mapping[Hashable, Counter[str]],
    places: Mapping[Hashable, tuple[Hashable | None, int]],
    stats: CandidateStats,
    params: RankParams,
    speakers: Mapping[Hashable, frozenset[str]] | None = None,
) -> dict[Hashable, float]:
    """The ranker's first-stage BM25F for a candidate set an index engine found: ``counts`` holds
    each candidate's term counts and ``places`` its (group, position). Neighbours are looked up among
    the candidates only, so the engine adds each found turn's neighbours to the set; with every
    passage a candidate this equals :meth:`Ranker.first_stage`. Candidates that match no query term
    in any field get no score."""
    k1, b = params.k1, params.b
    average = stats.average_length or 1.0
    inverse_norm = {key: 1.0 / (1.0 - b + b * sum(c.values()) / average) for key, c in counts.items()}
    at_place = {place: key for key, place in places.items() if place[0] is not None and key in counts}
    weights = [params.turn_weight] + [
        params.context_weight * params.context_decay ** (d - 1) for d in range(1, params.context_turns + 1)
    ]
    scores: dict[Hashable, float] = {}
    unique = list(dict.fromkeys(query_terms))
    for key in counts:
        group, position = places.get(key, (None, 0))
        around: list[tuple[Hashable, float]] = [(key, weights[0])]
        if group is not None:
            for distance in range(1, len(weights)):
                for other in (
                    at_place.get((group, position - distance)),
                    at_place.get((group, position + distance)),
                ):
                    if other is not None:
                        around.append((other, weights[distance]))
        total = 0.0
        for term in unique:
            tf = sum(weight * counts[other][term] * inverse_norm[other] for other, weight in around)
            if speakers is not None and term in speakers.get(key, frozenset()):
                tf += params.speaker_weight
            if tf > 0.0:
                frequency = max(stats.document_frequency.get(term, 0), 1)
                total += idf(stats.count, frequency) * tf * (k1 + 1.0) / (tf + k1)
        if total > 0.0:
            scores[key] = total
    return scores


@dataclass
class _Prepared:
    """What the ranker keeps per passage, derived once from its text."""

    terms: Counter[str]
    length: int
    positions: dict[str, list[int]]
    signature: tuple[str, ...]
    neighbours: list[tuple[int, int]] = field(default_factory=list)  # (other index, distance)


class Ranker:
    """Ranks passages for a query: BM25F over turn, context and speaker fields, then a re-rank.

    Built once from a list of passages (the evaluation builds it per corpus; the daemon's index
    engine feeds it candidates). ``search`` is a pure function of the passages, the query, the
    parameters and ``now``.
    """

    def __init__(self, passages: Sequence[Passage], *, context_turns: int = RankParams.context_turns) -> None:
        self.passages = list(passages)
        self._prepared: list[_Prepared] = []
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for index, passage in enumerate(self.passages):
            positions: dict[str, list[int]] = defaultdict(list)
            for position, term in iter_terms(passage.text):
                positions[term].append(position)
            terms = Counter({term: len(found) for term, found in positions.items()})
            for term, count in terms.items():
                self._postings[term].append((index, count))
            signature = tuple(sorted(terms))
            self._prepared.append(_Prepared(terms, sum(terms.values()), dict(positions), signature))
        self._count = len(self.passages)
        self._average = (sum(p.length for p in self._prepared) / self._count) if self._count else 1.0
        self._groups: dict[Hashable, list[int]] = defaultdict(list)
        for index, passage in enumerate(self.passages):
            if passage.group is not None:
                self._groups[passage.group].append(index)
        for members in self._groups.values():
            members.sort(key=lambda i: self.passages[i].position)
        self.context_turns = context_turns
        for members in self._groups.values():
            for slot, index in enumerate(members):
                lo, hi = max(0, slot - context_turns), min(len(members), slot + context_turns + 1)
                self._prepared[index].neighbours = [
                    (members[other], abs(other - slot)) for other in range(lo, hi) if other != slot
                ]
        # Whole sessions as documents, for the session prior.
        group_keys = list(self._groups)
        self._group_slot = {key: slot for slot, key in enumerate(group_keys)}
        self._group_bm25 = Bm25(
            [
                [
                    term
                    for i in self._groups[key]
                    for term, n in self._prepared[i].terms.items()
                    for _ in range(n)
                ]
                for key in group_keys
            ]
        )
        self._speaker_terms: dict[str, set[int]] = defaultdict(set)
        for index, passage in enumerate(self.passages):
            if passage.speaker:
                for term in tokenise(passage.speaker):
                    self._speaker_terms[term].add(index)

    def first_stage(self, query_terms: Sequence[str], params: RankParams) -> dict[int, float]:
        """BM25F of every passage that matches a query term in its turn, context or speaker field."""
        k1, b, average = params.k1, params.b, self._average or 1.0
        inverse_norm = [1.0 / (1.0 - b + b * p.length / average) for p in self._prepared]
        distance_weight = [params.turn_weight] + [
            params.context_weight * params.context_decay ** (d - 1)
            for d in range(1, min(params.context_turns, self.context_turns) + 1)
        ]
        scores: dict[int, float] = defaultdict(float)
        for term in dict.fromkeys(query_terms):
            postings = self._postings.get(term, [])
            speakers = self._speaker_terms.get(term, set())
            if not postings and not speakers:
                continue
            weight = idf(self._count, max(len(postings), 1))
            field_tf: dict[int, float] = defaultdict(float)
            for index, count in postings:
                own = count * inverse_norm[index]
                field_tf[index] += distance_weight[0] * own
                for other, distance in self._prepared[index].neighbours:
                    if distance < len(distance_weight):
                        field_tf[other] += distance_weight[distance] * own
            for index in speakers:
                field_tf[index] += params.speaker_weight
            for index, tf in field_tf.items():
                scores[index] += weight * tf * (k1 + 1.0) / (tf + k1)
        return scores

    def _proximity(self, index: int, query_terms: Sequence[str], span: int) -> int:
        """How many pairs of distinct query terms stand within ``span`` positions in the passage."""
        positions = self._prepared[index].positions
        present = [positions[t] for t in dict.fromkeys(query_terms) if t in positions]
        close = 0
        for i in range(len(present)):
            for j in range(i + 1, len(present)):
                if any(abs(a - c) <= span for a in present[i] for c in present[j]):
                    close += 1
        return close

    def search(
        self,
        query: str,
        *,
        params: RankParams | None = None,
        limit: int = 10,
        now: float | None = None,
        include_superseded: bool = False,
    ) -> list[Hit]:
        """The ``limit`` best passages for ``query``, best first (ties broken by passage order)."""
        params = params or RankParams()
        query_terms = tokenise(query)
        if not query_terms:
            return []
        scores = self.first_stage(query_terms, params)
        if not include_superseded:
            scores = {i: s for i, s in scores.items() if not self.passages[i].superseded}
        candidates = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[: params.rerank_depth]
        if not candidates:
            return []
        group_scores = self._group_bm25.scores(query_terms) if params.session_prior else {}
        best_group = max(group_scores.values(), default=0.0) or 1.0
        rescored: list[tuple[float, int]] = []
        for index, score in candidates:
            passage = self.passages[index]
            factor = 1.0
            if params.proximity_weight:
                factor += params.proximity_weight * self._proximity(index, query_terms, params.proximity_span)
            if params.session_prior and passage.group is not None:
                factor += (
                    params.session_prior * group_scores.get(self._group_slot[passage.group], 0.0) / best_group
                )
            if params.recency_weight and now is not None and passage.at is not None:
                age = max(0.0, now - passage.at)
                factor += params.recency_weight * 0.5 ** (age / params.half_life_s)
            rescored.append((score * factor, index))
        rescored.sort(key=lambda item: (-item[0], item[1]))
        hits: list[Hit] = []
        seen: set[tuple[str, ...]] = set()
        for score, index in rescored:
            signature = self._prepared[index].signature
            if signature and signature in seen:
                continue  # a near-identical passage already ranks higher: it says nothing new
            seen.add(signature)
            hits.append(Hit(self.passages[index].key, index, score))
            if len(hits) == limit:
                break
        return hits
