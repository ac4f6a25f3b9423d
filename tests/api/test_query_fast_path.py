"""The query fast path of :func:`dkvs.api.params.parse_query_pairs` answers exactly what
``parse_qsl`` answers, so the strict-parameter rules (unknown or repeated → 400) hold on it."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl

import pytest

from dkvs.api.params import MAX_QUERY_FIELDS, check_query, parse_query_pairs
from dkvs.errors import BadRequest

ALPHABET = "ab=&x1_-.~"


def reference(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS)


@pytest.mark.parametrize("query", ["acks=majority", "acks=1", "consistent=true", "a", "a=", "=b", "=",
                                   "a=1&b=2", "a=1&&b", "&a=1&", "a=b=c", "acks=1&acks=2", "&", "&&",
                                   "acks=majority&timeout=2.5", "a=%41&b=+", "k=v+w"])
def test_the_fast_path_agrees_with_parse_qsl(query):
    assert parse_query_pairs(query) == reference(query)


def test_the_fast_path_agrees_with_parse_qsl_on_random_queries():
    rng = random.Random(15)
    for _ in range(5000):
        query = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(12)))
        assert parse_query_pairs(query) == reference(query), query


def test_the_field_limit_holds_on_the_fast_path():
    at_limit = "&".join(f"f{i}=1" for i in range(MAX_QUERY_FIELDS))
    assert len(parse_query_pairs(at_limit)) == MAX_QUERY_FIELDS
    with pytest.raises(BadRequest):
        parse_query_pairs(at_limit + "&one=more")


def test_unknown_and_repeated_parameters_are_still_refused():
    with pytest.raises(BadRequest, match="unknown query parameter 'ack'"):
        check_query(parse_query_pairs("ack=majority"), ("acks", "timeout"))
    with pytest.raises(BadRequest, match="more than once"):
        check_query(parse_query_pairs("acks=1&acks=majority"), ("acks", "timeout"))
    check_query(parse_query_pairs("acks=majority"), ("acks", "timeout"))
