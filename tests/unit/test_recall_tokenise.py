"""Recall's tokeniser: code names whole and in parts, stems, stop words, numbers and error codes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coordinatord.recall.tokenise import STOP_WORDS, iter_terms, plain_tokenise, tokenise


def test_camel_case_is_kept_whole_and_split_into_stemmed_words() -> None:
    """``fetchUserProfile`` gives the whole name and its words, so "user profile" finds it too."""
    terms = tokenise("fetchUserProfile")
    assert terms[0] == "fetchuserprofile"
    assert {"fetch", "user", "profil"} <= set(terms)


def test_snake_case_dotted_names_and_paths_are_split_at_their_separators() -> None:
    """snake_case, dotted names and paths each give a whole term (separators as ``_``) and parts."""
    assert tokenise("retry_backoff_s")[:3] == ["retry_backoff_s", "retri", "backoff"]
    dotted = tokenise("asyncio.TimeoutError")
    assert dotted[0] == "asyncio_timeouterror" and {"asyncio", "timeout", "error"} <= set(dotted)
    path = tokenise("coordinatord/store/redis.py")
    assert path[0] == "coordinatord_store_redis_py" and {"coordinatord", "store", "py"} <= set(path)


def test_acronyms_stay_together_in_camel_case() -> None:
    """``HTTPServer`` splits into ``http`` and ``server``, not into single letters."""
    assert tokenise("HTTPServer") == ["httpserver", "http", "server"]


def test_error_codes_match_whole_and_by_number() -> None:
    """E1234 matches itself and its number; HTTP 503 gives ``http`` and ``503``."""
    assert tokenise("E1234") == ["e1234", "1234"]
    assert tokenise("HTTP 503") == ["http", "503"]
    assert {"ora_00942", "ora", "00942"} <= set(tokenise("ORA-00942"))


def test_a_sentence_end_is_not_part_of_a_name() -> None:
    """A full stop after a word ends the sentence: "redis." is the word redis, not a compound."""
    assert tokenise("It was redis.") == tokenise("It was redis")


def test_stemming_joins_word_forms() -> None:
    """Inflected forms meet on one stem, so "flaky tests" finds "the test was flaky"."""
    assert tokenise("decided decides deciding") == ["decid", "decid", "decid"]
    assert set(tokenise("flaky tests")) == set(tokenise("the test was flaky"))


def test_stop_words_and_lone_letters_are_dropped_but_numbers_kept() -> None:
    """Function words and single letters carry no topic; numbers (ports, codes) are kept."""
    assert tokenise("what is the port? it is 6379 a b") == ["port", "6379"]
    assert "not" in STOP_WORDS and "test" not in STOP_WORDS


def test_compound_parts_share_the_compound_position() -> None:
    """Positions count raw tokens: an identifier is one place, whatever it splits into."""
    positions = dict(iter_terms("see fetchUserProfile now"))
    assert [p for p, _ in iter_terms("see fetchUserProfile now")] == [0, 1, 1, 1, 1, 2]
    assert positions[0] == "see"


def test_empty_and_symbol_only_text_gives_no_terms() -> None:
    """Text without words (punctuation, underscores, whitespace) tokenises to nothing, no error."""
    assert tokenise("") == []
    assert tokenise(" ... __ -- // ") == []


def test_plain_tokeniser_knows_no_code() -> None:
    """The baseline tokeniser keeps a camelCase name as one stemmed word, as plain BM25 libraries do."""
    assert plain_tokenise("fetchUserProfile failed") == ["fetchuserprofil", "fail"]


@given(st.text(max_size=200))
def test_any_text_gives_terms_safe_to_store_space_joined(text: str) -> None:
    """Whatever the text, tokenising does not fail and every term is a non-empty run without
    whitespace, so terms can be stored space-joined in an index engine and split back unchanged."""
    for term in tokenise(text):
        assert term and not any(ch.isspace() for ch in term)
    assert " ".join(tokenise(text)).split() == tokenise(text)
