"""Recall's ranker: BM25, turns scored with their neighbours, speakers, supersession, dedup, recency."""

from __future__ import annotations

import math
from collections import Counter

from coordinatord.recall.rank import Bm25, CandidateStats, Passage, Ranker, RankParams, idf, score_candidates
from coordinatord.recall.tokenise import tokenise

NO_EXTRAS = RankParams(proximity_weight=0.0, session_prior=0.0, speaker_weight=0.0)


def session(group: str, *texts: str, speakers: tuple[str, ...] = ()) -> list[Passage]:
    """Passages of one session, keyed (group, turn), with optional speakers in turn."""
    return [
        Passage(key=(group, i), text=t, group=group, position=i, speaker=speakers[i] if speakers else None)
        for i, t in enumerate(texts)
    ]


def test_idf_falls_as_a_term_gets_common_and_never_goes_negative() -> None:
    """A rarer term weighs more; a term in every document still weighs a little, not below zero."""
    assert idf(100, 1) > idf(100, 10) > idf(100, 100) > 0


def test_bm25_prefers_the_document_with_the_rarer_matching_term() -> None:
    """Of two documents matching one query term each, the one with the rarer term ranks first."""
    docs = [["lock", "timeout"], ["lock", "pool"], ["lock", "cache"], ["deadlock"]]
    ranked = Bm25(docs).top(["lock", "deadlock"], 4)
    assert ranked[0][0] == 3
    assert {index for index, _ in ranked} == {0, 1, 2, 3}


def test_bm25_of_an_unknown_term_matches_nothing() -> None:
    """A query of terms no document has gives no scores (not an error, not zeros for everyone)."""
    assert Bm25([["a1"], ["b2"]]).scores(["zzz"]) == {}


def test_a_reply_is_found_through_the_turn_before_it() -> None:
    """The turn answering "what caused the flaky reconnect test" only says what the cause was; its
    neighbour names the test. The ranker returns the reply, which shares no word with the query."""
    passages = session(
        "s1",
        "The reconnect test is flaky again on CI.",
        "Found it: the pool was shared between event loops.",
        "Thanks, merged.",
    ) + session("s2", "Unrelated: the docs build is slow.", "We should cache the theme.")
    hits = Ranker(passages).search("what caused the flaky reconnect test", params=NO_EXTRAS, limit=3)
    keys = [hit.key for hit in hits]
    assert ("s1", 1) in keys
    assert ("s2", 0) not in keys and ("s2", 1) not in keys


def test_context_does_not_cross_sessions() -> None:
    """The last turn of one session is no context for the first turn of the next."""
    passages = session("a", "the flaky reconnect test") + session("b", "nothing related here")
    hits = Ranker(passages).search("flaky reconnect", params=NO_EXTRAS, limit=5)
    assert [hit.key for hit in hits] == [("a", 0)]


def test_the_turn_itself_outweighs_its_neighbours() -> None:
    """Of a turn that says the words and its neighbour that only sits next to it, the turn ranks first."""
    passages = session("s", "we decided to shard the index", "ok", "later")
    hits = Ranker(passages).search("shard the index", params=NO_EXTRAS, limit=3)
    assert hits[0].key == ("s", 0)
    assert hits[0].score > hits[1].score


def test_code_identifiers_match_their_words() -> None:
    """A question in words finds the turn that only names the identifier."""
    passages = session("s", "fetchUserProfile returns 503 now", "lunch?") + session("t", "user left early")
    hits = Ranker(passages).search("user profile fetch errors", params=NO_EXTRAS, limit=1)
    assert hits[0].key == ("s", 0)


def test_a_speaker_named_in_the_query_lifts_that_speakers_turns() -> None:
    """Two turns match the same words; the one spoken by the agent the query names ranks first."""
    passages = session(
        "s", "the cache key was wrong", "the cache key was wrong", speakers=("atlas-agent", "birch-agent")
    )
    params = RankParams(proximity_weight=0.0, session_prior=0.0, speaker_weight=0.5)
    hits = Ranker(passages).search("what did birch say about the cache key", params=params, limit=2)
    assert hits[0].key == ("s", 1)


def test_superseded_passages_are_left_out_unless_asked_for() -> None:
    """A superseded memory is not a hit by default and is one with ``include_superseded``."""
    passages = [
        Passage(key="old", text="deploy on fridays", superseded=True),
        Passage(key="new", text="never deploy on fridays"),
    ]
    ranker = Ranker(passages)
    assert [hit.key for hit in ranker.search("deploy fridays")] == ["new"]
    assert {hit.key for hit in ranker.search("deploy fridays", include_superseded=True)} == {"old", "new"}


def test_near_identical_hits_are_collapsed() -> None:
    """The same words said twice give one hit, so the top k is not spent on repeats."""
    passages = [
        Passage(key=1, text="Restart valkey after the upgrade."),
        Passage(key=2, text="restart Valkey after the upgrade"),
        Passage(key=3, text="valkey upgrade notes are in the wiki"),
    ]
    keys = [hit.key for hit in Ranker(passages).search("restart valkey upgrade", limit=3)]
    assert keys == [1, 3]


def test_recency_breaks_a_tie_towards_the_newer_passage_only_when_asked() -> None:
    """Two equal matches: with a recency weight and ``now`` the newer ranks first; without, the first."""
    passages = [
        Passage(key="old", text="token bucket refill rate", at=0.0),
        Passage(key="new", text="token bucket refill rate limit", at=86400.0 * 60),
    ]
    ranker = Ranker(passages)
    plain = ranker.search("token bucket refill", params=RankParams(), limit=2)
    assert plain[0].key == "old"  # shorter, so BM25 ranks it higher
    recent = ranker.search(
        "token bucket refill", params=RankParams(recency_weight=1.0), limit=2, now=86400.0 * 61
    )
    assert recent[0].key == "new"


def test_a_query_without_terms_or_matches_gives_no_hits() -> None:
    """A query of stop words or of words in no passage gives an empty list, not an error."""
    ranker = Ranker(session("s", "alpha beta"))
    assert ranker.search("the of and") == []
    assert ranker.search("gamma") == []
    assert Ranker([]).search("alpha") == []


def test_limit_caps_the_hits_and_order_is_deterministic() -> None:
    """At most ``limit`` hits, best first; equal scores keep passage order."""
    passages = [Passage(key=i, text=f"same words here {i}") for i in range(5)]
    hits = Ranker(passages).search("same words", limit=3)
    assert [hit.key for hit in hits] == [0, 1, 2]


def test_scoring_a_candidate_set_equals_the_first_stage_over_the_whole_corpus() -> None:
    """``score_candidates`` (what the daemon runs on an engine's candidates) gives the same scores as
    the ranker's own first stage when every passage is a candidate: one definition of the score."""
    passages = session(
        "s1",
        "The reconnect test is flaky.",
        "Found it: the pool was shared.",
        "ok",
        "merged the fix for the pool",
    ) + session("s2", "fetchUserProfile times out", "pool size is 10")
    ranker = Ranker(passages)
    params = RankParams(speaker_weight=0.0)
    query = tokenise("flaky reconnect pool")
    expected = {ranker.passages[i].key: s for i, s in ranker.first_stage(query, params).items()}
    counts = {p.key: Counter(tokenise(p.text)) for p in passages}
    places = {p.key: (p.group, p.position) for p in passages}
    frequency = Counter(term for c in counts.values() for term in c)
    stats = CandidateStats(
        len(passages), sum(sum(c.values()) for c in counts.values()) / len(passages), frequency
    )
    got = score_candidates(query, counts, places, stats, params)
    assert got.keys() == expected.keys()
    for key, score in expected.items():
        assert math.isclose(got[key], score, rel_tol=1e-9)
