"""Parsing ``POST /`` bodies: what is accepted, and the message for what is not."""

from __future__ import annotations

import json
import re

import pytest

from pipeserve_nb import InvalidInput, TooLarge, UnsupportedMediaType
from pipeserve_nb._server.edge.body import WHITESPACE, ParsedRequest, parse_body
from pipeserve_nb._server.edge.openapi import _TEXT


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded"]
)
def test_raw_text_is_one_input_answered_alone(content_type: str | None) -> None:
    assert parse_body(content_type, "test [MASK] é".encode(), 8) == ParsedRequest(["test [MASK] é"], {}, single=True)


def test_json_string_list_and_parameters() -> None:
    assert parse_body("application/json", b'{"inputs": "a"}', 8) == ParsedRequest(["a"], {}, single=True)
    parsed = parse_body("application/json", b'{"inputs": ["a", "b"], "parameters": {"top_k": 2}}', 8)
    assert parsed == ParsedRequest(["a", "b"], {"top_k": 2}, single=False)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("text/plain", b"", "the body is empty"),
        ("text/plain", b"  \n\t", "the body is empty"),
        ("text/plain", b"\xff\xfe", "not valid UTF-8"),
        ("application/json", b"{", "malformed JSON"),
        ("application/json", b"null", "must be an object"),
        ("application/json", b"[1]", "must be an object"),
        ("application/json", b"{}", 'missing "inputs"'),
        ("application/json", b'{"inputs": 5}', "must be a string or a list of strings, got a number"),
        ("application/json", b'{"inputs": []}', "empty list"),
        ("application/json", b'{"inputs": [1, 2]}', r'"inputs"\[0\] must be a string'),
        ("application/json", b'{"inputs": [["a"]]}', r'"inputs"\[0\] must be a string, got a list'),
        ("application/json", b'{"inputs": ["a", " "]}', r'"inputs"\[1\] is empty'),
        ("application/json", b'{"inputs": "a", "parameters": 3}', '"parameters" must be an object'),
        ("application/json", b'{"input": "a"}', "unknown field"),
        ("application/json", b'{"inputs": "a\\ud800b"}', "malformed JSON: no low surrogate"),
        ("application/json", b'{"inputs": "a", "parameters": {"x": NaN}}', "malformed JSON"),
        ("application/json", b'\xef\xbb\xbf{"inputs": "a"}', "malformed JSON"),
        ("application/json", b"[" * 5000 + b"]" * 5000, "nests deeper than max_json_depth=32"),
        ("application/json", b'{"inputs": "a", "parameters": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}", "deeper"),
        ("application/json", b'{"inputs": ' + b"[" * 40 + b'"a"' + b"]" * 40 + b"}", "nests deeper than"),
        ("application/json", b'{"inputs": "a", "parameters": {"x": 1e999}}', "infinity"),
    ],
)
def test_bad_bodies_get_a_message_a_person_can_act_on(content_type: str, body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_body(content_type, body, 2)


def test_the_depth_bound_counts_the_body_as_level_one() -> None:
    nested = {"x": {"y": [[1]]}}  # the body 1, parameters 2, x 3, y 4, the inner list 5
    doc = b'{"inputs": "a", "parameters": ' + json.dumps(nested).encode() + b"}"
    assert parse_body("application/json", doc, 2, max_depth=5).parameters == nested
    with pytest.raises(InvalidInput, match="max_json_depth=4"):
        parse_body("application/json", doc, 2, max_depth=4)


def test_numbers_python_would_choke_on_parse_or_refuse_cleanly() -> None:
    wide = b'{"inputs": "a", "parameters": {"x": 18446744073709551616}}'  # past 64 bits: a float
    assert parse_body("application/json", wide, 2).parameters["x"] == 2.0**64
    huge = b'{"inputs": "a", "parameters": {"x": 1' + b"0" * 5000 + b"}}"  # json.loads raises ValueError here
    with pytest.raises(InvalidInput, match="infinity"):
        parse_body("application/json", huge, 2)


def test_more_inputs_than_the_cap_are_too_large() -> None:
    with pytest.raises(TooLarge, match="has 3 texts; at most 2 are allowed"):
        parse_body("application/json", b'{"inputs": ["a","b","c"]}', 2)


def test_other_content_types_are_refused() -> None:
    with pytest.raises(UnsupportedMediaType, match="send raw text"):
        parse_body("image/png", b"\x89PNG", 8)


def test_the_openapi_text_pattern_is_the_emptiness_rule_the_server_applies() -> None:
    """JSON Schema's \\S is ECMAScript's, which counts U+0085 as text; Python's strip() does not."""
    assert "".join(chr(c) for c in range(0x110000) if chr(c).isspace()) == WHITESPACE
    assert "\\s" not in str(_TEXT["pattern"]).lower()  # shorthands mean other sets in other regex dialects
    pattern = re.compile(str(_TEXT["pattern"]))
    samples = ["a", " a ", "\x85\x85", "\x1c", "\ufeff", "\u3000 \t", "\u200b", "é"]
    for text in samples:
        try:
            parse_body("text/plain", text.encode(), 8)
        except InvalidInput:
            assert pattern.search(text) is None, f"{text!r}: the schema calls it text, the server refuses it"
        else:
            assert pattern.search(text) is not None, f"{text!r}: the server takes it, the schema calls it empty"
